//! `state.json` per service: what the agent must know after a restart to
//! re-attach to running instances and finish or undo a half-done swap.
//! Written atomically (fsync + rename) at every phase change.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::instance::InstanceRecord;

/// The phases of a swap that are recorded before they are entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapPhase {
    /// The new instance is being started (or waits to become ready, or
    /// bakes). The old one still serves alone or alongside.
    Starting,
    /// The new instance was judged healthy; the old one is being stopped.
    StoppingOld,
}

/// A swap in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRecord {
    pub command_id: String,
    pub target: String,
    pub phase: SwapPhase,
    pub new_instance: Option<String>,
    pub old_instance: Option<String>,
}

/// Everything durable about one service. A field missing from the file
/// (written by an older agent) takes its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceState {
    pub service: String,
    pub active_release: Option<String>,
    pub previous_release: Option<String>,
    /// Live instances as last recorded.
    pub instances: Vec<InstanceRecord>,
    pub swap: Option<SwapRecord>,
    pub drained: bool,
    /// Stopped on purpose (`Stop`, or `Drain` with stop).
    pub stopped: bool,
}

impl ServiceState {
    /// Reads `state.json`: None when there is none (a service new here).
    /// A file that cannot be read or parsed is an error, never taken for a
    /// missing one: it records which instances run, and starting over
    /// would start a second copy beside them.
    pub fn load(path: &Path) -> Result<Option<ServiceState>, CorruptFile> {
        read_json(
            path,
            "the service's instances and its swap in progress",
            "forgets this service's running instances: stop them by hand first",
        )
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("serializable");
        crate::sys::write_synced(path, &bytes, 0o644)
    }
}

/// What to do, after an agent restart, with a swap that was in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No swap was in progress.
    Nothing,
    /// The new instance was not yet judged healthy: stop it gracefully and
    /// let the old one keep serving; the command is then re-run.
    Undo { stop: Option<String> },
    /// The new instance was judged healthy: stop the old one and record the
    /// new release as active.
    Finish {
        stop_old: Option<String>,
        new_instance: String,
        target: String,
    },
    /// The new instance is gone: forget it; the command is re-run.
    Forget,
}

/// Decides what to do with a recorded swap, given which recorded instances
/// are still alive (pure).
pub fn recover(swap: Option<&SwapRecord>, alive: &[String]) -> Recovery {
    let Some(s) = swap else {
        return Recovery::Nothing;
    };
    let new_alive = s.new_instance.as_ref().filter(|n| alive.contains(n));
    let old_alive = s.old_instance.clone().filter(|o| alive.contains(o));
    match (s.phase, new_alive) {
        (SwapPhase::Starting, Some(n)) => Recovery::Undo {
            stop: Some(n.clone()),
        },
        (SwapPhase::Starting, None) => Recovery::Forget,
        (SwapPhase::StoppingOld, Some(n)) => Recovery::Finish {
            stop_old: old_alive,
            new_instance: n.clone(),
            target: s.target.clone(),
        },
        (SwapPhase::StoppingOld, None) => Recovery::Forget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swap(phase: SwapPhase) -> SwapRecord {
        SwapRecord {
            command_id: "c".into(),
            target: "r2".into(),
            phase,
            new_instance: Some("new".into()),
            old_instance: Some("old".into()),
        }
    }

    #[test]
    fn a_swap_killed_before_the_new_instance_was_judged_is_undone() {
        assert_eq!(
            recover(
                Some(&swap(SwapPhase::Starting)),
                &["old".into(), "new".into()]
            ),
            Recovery::Undo {
                stop: Some("new".into())
            }
        );
        assert_eq!(
            recover(Some(&swap(SwapPhase::Starting)), &["old".into()]),
            Recovery::Forget
        );
    }

    #[test]
    fn a_swap_killed_while_stopping_the_old_instance_is_finished() {
        assert_eq!(
            recover(
                Some(&swap(SwapPhase::StoppingOld)),
                &["old".into(), "new".into()]
            ),
            Recovery::Finish {
                stop_old: Some("old".into()),
                new_instance: "new".into(),
                target: "r2".into()
            }
        );
        assert_eq!(
            recover(Some(&swap(SwapPhase::StoppingOld)), &["new".into()]),
            Recovery::Finish {
                stop_old: None,
                new_instance: "new".into(),
                target: "r2".into()
            }
        );
    }

    #[test]
    fn no_swap_means_nothing_to_recover() {
        assert_eq!(recover(None, &[]), Recovery::Nothing);
    }
}

/// An agent state file that exists but cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} cannot be read ({why}). It records {what}, and the agent does not guess: check it (a disk fault? an edit by hand?), then repair it or move it away. Without it the agent {without}."
)]
pub struct CorruptFile {
    pub path: String,
    pub why: String,
    pub what: &'static str,
    pub without: &'static str,
}

/// Reads a JSON state file: None when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
    without: &'static str,
) -> Result<Option<T>, CorruptFile> {
    let corrupt = |why: String| CorruptFile {
        path: path.display().to_string(),
        why,
        what,
        without,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(corrupt(e.to_string())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}
