//! Why a command failed, as an agent reports it (`CommandResult.failure`):
//! the coordinator decides on the kind (skip a drained host, retry a
//! transient staging failure), never on the wording of a message.

use cutover_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// The kind of a command's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The command cannot be carried out as sent (an invalid spec, a
    /// release not staged here, no previous release): the same anywhere,
    /// at any time.
    Invalid,
    /// The artifact was refused: checksum, size, an unsafe archive, not
    /// found, or refused by the host's policy.
    Artifact,
    /// Something this host needed was out of reach for now (the artifact
    /// server unreachable or overloaded, after the agent's own retries):
    /// trying again later may work.
    Unavailable,
    /// Skipped: an operator drained the service on this host.
    Drained,
    /// A hook failed.
    Hook,
    /// The new instance did not become ready, or failed its health checks.
    Unhealthy,
    /// The new instance could not be started.
    Start,
    /// Refused by fencing: an older rollout's command, or a command id
    /// already used for another command.
    Refused,
    /// Given up for a newer command on the same service (a rollback).
    Superseded,
    /// The agent itself failed (a disk it cannot write, a panic).
    Internal,
}

impl Failure {
    /// Whether sending the command again (as a new command) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Failure::Unavailable)
    }

    /// The word shown to operators (`staging failed (unavailable): ...`).
    pub fn name(self) -> &'static str {
        match self {
            Failure::Invalid => "invalid",
            Failure::Artifact => "artifact",
            Failure::Unavailable => "unavailable",
            Failure::Drained => "drained",
            Failure::Hook => "hook",
            Failure::Unhealthy => "unhealthy",
            Failure::Start => "start",
            Failure::Refused => "refused",
            Failure::Superseded => "superseded",
            Failure::Internal => "internal",
        }
    }

    /// The wire value.
    pub fn to_wire(this: Option<Failure>) -> pb::FailureKind {
        use pb::FailureKind as K;
        match this {
            None => K::Unspecified,
            Some(Failure::Invalid) => K::Invalid,
            Some(Failure::Artifact) => K::Artifact,
            Some(Failure::Unavailable) => K::Unavailable,
            Some(Failure::Drained) => K::Drained,
            Some(Failure::Hook) => K::Hook,
            Some(Failure::Unhealthy) => K::Unhealthy,
            Some(Failure::Start) => K::Start,
            Some(Failure::Refused) => K::Refused,
            Some(Failure::Superseded) => K::Superseded,
            Some(Failure::Internal) => K::Internal,
        }
    }

    /// From the wire; `None` for success, an agent older than the field,
    /// or a kind newer than this build (the message still says what
    /// happened).
    pub fn from_wire(kind: i32) -> Option<Failure> {
        use pb::FailureKind as K;
        match K::try_from(kind).ok()? {
            K::Unspecified => None,
            K::Invalid => Some(Failure::Invalid),
            K::Artifact => Some(Failure::Artifact),
            K::Unavailable => Some(Failure::Unavailable),
            K::Drained => Some(Failure::Drained),
            K::Hook => Some(Failure::Hook),
            K::Unhealthy => Some(Failure::Unhealthy),
            K::Start => Some(Failure::Start),
            K::Refused => Some(Failure::Refused),
            K::Superseded => Some(Failure::Superseded),
            K::Internal => Some(Failure::Internal),
        }
    }

    pub const ALL: [Failure; 10] = [
        Failure::Invalid,
        Failure::Artifact,
        Failure::Unavailable,
        Failure::Drained,
        Failure::Hook,
        Failure::Unhealthy,
        Failure::Start,
        Failure::Refused,
        Failure::Superseded,
        Failure::Internal,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_wire_and_only_unavailable_is_retried() {
        for f in Failure::ALL {
            assert_eq!(
                Failure::from_wire(Failure::to_wire(Some(f)) as i32),
                Some(f)
            );
            assert_eq!(f.is_retryable(), f == Failure::Unavailable, "{f:?}");
        }
        assert_eq!(Failure::from_wire(0), None);
        assert_eq!(Failure::from_wire(9999), None, "a newer agent's kind");
    }
}
