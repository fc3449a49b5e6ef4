//! The rollout's vocabulary: where each host is ([`HostPhase`]), where the
//! rollout is ([`Phase`]), what it is told ([`Event`]) and what it asks
//! the runner to do ([`Effect`]).

use serde::{Deserialize, Serialize};

/// Where one host is in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum HostPhase {
    /// Not touched yet.
    Pending,
    /// `Stage` sent.
    Staging,
    /// Staged; waits for its batch.
    Staged,
    /// Recreate: `Stop` (keeping the sockets) sent at `since_ms`.
    Stopping { since_ms: i64 },
    /// Recreate: the old release is stopped; waits for the new one.
    Stopped,
    /// `Activate` sent at `since_ms`.
    Activating { since_ms: i64 },
    /// Runs the new release.
    Done { at_ms: i64 },
    /// Could not stage or activate: still runs what it ran before.
    Failed { reason: String },
    /// Left out: an operator drained the service there while the rollout
    /// ran (and it did not include drained hosts). Still runs, or keeps
    /// stopped, what it had before; neither failed nor rolled back.
    Skipped { reason: String },
    /// Sent back to the release it ran before.
    RollingBack,
    /// Back on the release it ran before.
    RolledBack,
    /// The rollback itself failed.
    RollbackFailed { reason: String },
}

impl HostPhase {
    pub(super) fn is_failed(&self) -> bool {
        matches!(self, HostPhase::Failed { .. })
    }
}

/// Where the rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Staging on every target in parallel.
    Staging,
    /// Recreate: stopping the old release on every target.
    Stopping,
    /// Activating batch `batch` (0-based).
    Activating { batch: usize },
    /// Canary: batch `batch` is healthy; waiting out its pause, its
    /// analysis, or an operator's promote.
    Waiting {
        batch: usize,
        /// When the pause ends; `None` waits for `cutover promote`.
        until_ms: Option<i64>,
        /// Inconclusive analyses so far.
        retries: u32,
    },
    /// Blue/green: the new group is healthy; the switch command runs.
    Switching { batch: usize },
    /// Sending changed hosts back to their previous release.
    RollingBack { reason: String, aborted: bool },
    /// Every target runs the new release.
    Succeeded,
    /// Rolled back by policy or by an operator.
    RolledBack { reason: String },
    /// Aborted by an operator (and rolled back).
    Aborted { reason: String },
    /// Stopped without finishing (a rollback failed, or auto-rollback is off).
    Failed { reason: String },
}

/// The names of the phases in which a rollout still runs, as stored: the
/// one list (the store resumes these after a restart).
pub const ACTIVE_PHASES: &[&str] = &[
    "staging",
    "stopping",
    "activating",
    "waiting",
    "switching",
    "rolling_back",
];

/// The names of the phases in which a rollout has ended.
pub const TERMINAL_PHASES: &[&str] = &["succeeded", "rolled_back", "aborted", "failed"];

/// Whether a stored phase name is an end (`Phase::is_terminal` of the
/// phase it names).
pub fn is_terminal_name(name: &str) -> bool {
    TERMINAL_PHASES.contains(&name)
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded
                | Phase::RolledBack { .. }
                | Phase::Aborted { .. }
                | Phase::Failed { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Staging => "staging",
            Phase::Stopping => "stopping",
            Phase::Activating { .. } => "activating",
            Phase::Waiting { .. } => "waiting",
            Phase::Switching { .. } => "switching",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack { .. } => "rolled_back",
            Phase::Aborted { .. } => "aborted",
            Phase::Failed { .. } => "failed",
        }
    }
}

/// Something that happens to a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start,
    /// A host answered a command.
    Result {
        host: String,
        command_id: String,
        ok: bool,
        message: String,
        /// Why it failed, when the agent says (see
        /// [`Failure`](cutover_common::failure::Failure)).
        failure: Option<cutover_common::failure::Failure>,
    },
    /// A host that runs the new release reports it unhealthy.
    Unhealthy {
        host: String,
        status: String,
    },
    /// Time passes (deadlines).
    Tick,
    Pause,
    Resume,
    /// Operator abort: roll back and end as aborted.
    Abort,
    /// Operator rollback of the running rollout.
    Rollback,
    /// Operator: go on to the next canary step now.
    Promote,
    /// An operator approved the deployment (`targets.approval`).
    Approve {
        by: String,
    },
    /// The verdict of the analysis the rollout asked for.
    Analysis {
        batch: usize,
        report: crate::analysis::Report,
    },
    /// The coordinator lost touch with a host (no heartbeat for
    /// host_timeout).
    Lost {
        host: String,
    },
    /// The blue/green switch command ran.
    Switched {
        ok: bool,
        detail: String,
    },
}

/// What a rollout asks a host to do. Which kind a result answers is told
/// by matching its command id against the ids this rollout would give the
/// host (never by reading the id back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    Stage,
    Activate,
    Stop,
    Revert,
}

impl CommandKind {
    pub const ALL: [CommandKind; 4] = [
        CommandKind::Stage,
        CommandKind::Activate,
        CommandKind::Stop,
        CommandKind::Revert,
    ];

    /// The word in command ids (`d7-stage-3`): part of the wire contract,
    /// since agents journal commands by id.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Stage => "stage",
            CommandKind::Activate => "activate",
            CommandKind::Stop => "stop",
            CommandKind::Revert => "revert",
        }
    }
}

/// What a runner is to do for a transition: commands to hosts, or the
/// blue/green switch, which the coordinator itself runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Stage {
        host: String,
        command_id: String,
    },
    Activate {
        host: String,
        command_id: String,
    },
    /// Stop the old release, keeping its listening sockets (recreate).
    Stop {
        host: String,
        command_id: String,
    },
    /// Back to `to` (a staged release), or stop the service when the host
    /// ran none before.
    Revert {
        host: String,
        command_id: String,
        to: Option<String>,
    },
    /// Run the blue/green switch command: traffic to group `live` (served
    /// by `hosts`), away from `old`. Its outcome comes back as
    /// [`Event::Switched`]; running it again sends traffic to the same
    /// place, so a resumed rollout asks for it again.
    Switch {
        live: String,
        old: Option<String>,
        hosts: Vec<String>,
    },
}

impl Effect {
    /// The command's kind; `None` for the switch (not a host's command).
    pub fn kind(&self) -> Option<CommandKind> {
        match self {
            Effect::Stage { .. } => Some(CommandKind::Stage),
            Effect::Activate { .. } => Some(CommandKind::Activate),
            Effect::Stop { .. } => Some(CommandKind::Stop),
            Effect::Revert { .. } => Some(CommandKind::Revert),
            Effect::Switch { .. } => None,
        }
    }

    /// The host a command goes to; empty for the switch.
    pub fn host(&self) -> &str {
        match self {
            Effect::Stage { host, .. }
            | Effect::Activate { host, .. }
            | Effect::Stop { host, .. }
            | Effect::Revert { host, .. } => host,
            Effect::Switch { .. } => "",
        }
    }

    /// The command's id; empty for the switch.
    pub fn command_id(&self) -> &str {
        match self {
            Effect::Stage { command_id, .. }
            | Effect::Activate { command_id, .. }
            | Effect::Stop { command_id, .. }
            | Effect::Revert { command_id, .. } => command_id,
            Effect::Switch { .. } => "",
        }
    }
}

/// One line of a rollout's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub at_ms: i64,
    pub message: String,
}

/// A memo of host positions, both ways (the set of hosts never changes
/// once planned); never part of a rollout's identity.
#[derive(Debug, Clone, Default)]
pub struct IndexCache(
    pub(super) std::sync::OnceLock<(std::collections::HashMap<String, usize>, Vec<String>)>,
);

impl PartialEq for IndexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
