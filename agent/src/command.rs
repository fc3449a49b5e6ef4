//! Commands from the coordinator, as the agent's domain sees them, and
//! their conversion from and to the wire (the only place that does).

use cutover_common::service::ServiceSpec;
use cutover_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::fetch::Artifact;
use crate::hooks::HookOutput;

/// Largest artifact accepted when a command does not say.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// One instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub deployment_id: String,
    pub step: u32,
    pub epoch: u64,
    /// The leader term of the coordinator that sent it (0: not fenced).
    #[serde(default)]
    pub term: u64,
    pub kind: Kind,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Stage {
        service: String,
        release_id: String,
        version: String,
        url: String,
        sha256: String,
        max_bytes: u64,
        spec: ServiceSpec,
    },
    Activate {
        service: String,
        release_id: String,
        /// Also where an operator drained the service (see
        /// `Service::refuse_drained`).
        #[serde(default)]
        include_drained: bool,
    },
    /// Back to the previous release. `to` is filled in when the command
    /// is received (before it is journaled), so a command re-run after an
    /// agent restart goes to the same release, not to whatever is
    /// "previous" by then.
    Rollback {
        service: String,
        #[serde(default)]
        to: Option<String>,
    },
    Drain {
        service: String,
        stop: bool,
    },
    Undrain {
        service: String,
    },
    Stop {
        service: String,
        /// Keep holding the sockets (recreate): clients queue, not refused.
        #[serde(default)]
        keep_listeners: bool,
        /// Also where an operator drained the service.
        #[serde(default)]
        include_drained: bool,
    },
    RunHook {
        service: String,
        hook: String,
    },
}

impl Command {
    /// Whether `incoming`, which arrived with this command's id, asks for
    /// the same thing. A repeated id is answered from the journal; a
    /// different command under a known id is refused, never answered with
    /// the other command's result (that would let anyone who can name an
    /// id claim a step ran). A rollback is journaled with the release it
    /// resolved to, so one that names none matches any.
    pub fn same_request(&self, incoming: &Command) -> bool {
        if self.deployment_id != incoming.deployment_id
            || self.step != incoming.step
            || self.epoch != incoming.epoch
        {
            return false;
        }
        match (&self.kind, &incoming.kind) {
            (Kind::Rollback { service: a, to: at }, Kind::Rollback { service: b, to: bt }) => {
                a == b && (bt.is_none() || at == bt)
            }
            (a, b) => a == b,
        }
    }
}

impl Kind {
    pub fn service(&self) -> &str {
        match self {
            Kind::Stage { service, .. }
            | Kind::Activate { service, .. }
            | Kind::Rollback { service, .. }
            | Kind::Drain { service, .. }
            | Kind::Undrain { service }
            | Kind::Stop { service, .. }
            | Kind::RunHook { service, .. } => service,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Stage { .. } => "stage",
            Kind::Activate { .. } => "activate",
            Kind::Rollback { .. } => "rollback",
            Kind::Drain { .. } => "drain",
            Kind::Undrain { .. } => "undrain",
            Kind::Stop { .. } => "stop",
            Kind::RunHook { .. } => "run_hook",
        }
    }

    pub fn artifact(&self) -> Option<Artifact> {
        match self {
            Kind::Stage {
                url,
                sha256,
                max_bytes,
                ..
            } => Some(Artifact {
                url: url.clone(),
                sha256: sha256.clone(),
                max_bytes: *max_bytes,
            }),
            _ => None,
        }
    }
}

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub deployment_id: String,
    pub ok: bool,
    pub message: String,
    pub service: String,
    pub active_release: String,
    pub previous_release: String,
    pub hooks: Vec<HookOutput>,
    pub finished_at_ms: i64,
    /// The serving instance once the command was done (0: none).
    #[serde(default)]
    pub pid: u32,
    /// Whether the service is drained.
    #[serde(default)]
    pub drained: bool,
    /// Why it failed (journaled results of older agents have none).
    #[serde(default)]
    pub failure: Option<cutover_common::failure::Failure>,
    /// The service's releases on disk after the command.
    #[serde(default)]
    pub staged: Vec<String>,
}

/// A wire command that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum InvalidCommand {
    #[error("command_id `{0}` is invalid: expected 1-64 characters of a-z, A-Z, 0-9, `-`, `_`")]
    Id(String),
    #[error("command {0} has no kind")]
    NoKind(String),
    #[error("command {id}: service spec: {why}")]
    Spec { id: String, why: String },
    #[error("command {id}: service `{service}`: {why}")]
    Service {
        id: String,
        service: String,
        why: String,
    },
}

/// Checks a command id (it names a journal file).
pub fn check_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl TryFrom<pb::Command> for Command {
    type Error = InvalidCommand;

    fn try_from(c: pb::Command) -> Result<Self, Self::Error> {
        use pb::command::Kind as K;
        if !check_id(&c.command_id) {
            return Err(InvalidCommand::Id(c.command_id));
        }
        let id = c.command_id.clone();
        let kind = match c.kind.ok_or_else(|| InvalidCommand::NoKind(id.clone()))? {
            K::Stage(s) => {
                // A newer coordinator's fields this agent does not know are
                // skipped and named (common/src/compat.rs).
                let (spec, skipped): (ServiceSpec, Vec<String>) =
                    cutover_common::compat::decode_tolerant(&s.service_spec_json).map_err(
                        |why| InvalidCommand::Spec {
                            id: id.clone(),
                            why,
                        },
                    )?;
                if !skipped.is_empty() {
                    tracing::warn!(
                        command_id = %id,
                        service = %s.service,
                        fields = ?skipped,
                        "the spec has fields this agent does not know (a newer coordinator?): skipped"
                    );
                }
                spec.validate().map_err(|e| InvalidCommand::Spec {
                    id: id.clone(),
                    why: e.to_string(),
                })?;
                if spec.service != s.service {
                    return Err(InvalidCommand::Spec {
                        id,
                        why: format!(
                            "spec is for `{}`, command for `{}`",
                            spec.service, s.service
                        ),
                    });
                }
                Kind::Stage {
                    service: s.service,
                    release_id: s.release_id,
                    version: s.version,
                    url: s.artifact_url,
                    sha256: s.artifact_sha256,
                    max_bytes: if s.max_bytes == 0 {
                        DEFAULT_MAX_ARTIFACT_BYTES
                    } else {
                        s.max_bytes
                    },
                    spec,
                }
            }
            K::Activate(a) => Kind::Activate {
                service: a.service,
                release_id: a.release_id,
                include_drained: a.include_drained,
            },
            K::Rollback(r) => Kind::Rollback {
                service: r.service,
                to: (!r.to_release_id.is_empty()).then_some(r.to_release_id),
            },
            K::Drain(d) => Kind::Drain {
                service: d.service,
                stop: d.stop,
            },
            K::Undrain(u) => Kind::Undrain { service: u.service },
            K::Stop(s) => Kind::Stop {
                service: s.service,
                keep_listeners: s.keep_listeners,
                include_drained: s.include_drained,
            },
            K::RunHook(h) => Kind::RunHook {
                service: h.service,
                hook: h.hook,
            },
        };
        if let Err(e) = cutover_common::identity::check_name(kind.service()) {
            return Err(InvalidCommand::Service {
                id,
                service: kind.service().into(),
                why: e.to_string(),
            });
        }
        Ok(Command {
            id: c.command_id,
            deployment_id: c.deployment_id,
            step: c.step,
            epoch: c.epoch,
            term: c.term,
            kind,
        })
    }
}

impl From<&CommandResult> for pb::CommandResult {
    fn from(r: &CommandResult) -> Self {
        pb::CommandResult {
            command_id: r.command_id.clone(),
            ok: r.ok,
            message: r.message.clone(),
            service: r.service.clone(),
            active_release: r.active_release.clone(),
            previous_release: r.previous_release.clone(),
            hooks: r
                .hooks
                .iter()
                .map(|h| pb::HookOutput {
                    name: h.name.clone(),
                    ok: h.ok,
                    status: h.status.clone(),
                    output: h.output.clone(),
                    duration_ms: h.duration_ms,
                })
                .collect(),
            finished_at_ms: r.finished_at_ms,
            deployment_id: r.deployment_id.clone(),
            pid: r.pid,
            drained: r.drained,
            failure: cutover_common::failure::Failure::to_wire(r.failure) as i32,
            staged_releases: r.staged.clone(),
        }
    }
}
