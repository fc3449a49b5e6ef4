//! The command journal: every command is written (fsync) before the agent
//! acts on it, and its result after; a repeated `command_id` is answered
//! from here, so commands are idempotent across reconnects, coordinator
//! restarts and agent restarts. Results stay marked unacknowledged until
//! the coordinator acks them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult, check_id};

/// One journal entry (`journal/<command_id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub command: Command,
    pub received_at_ms: i64,
    pub result: Option<CommandResult>,
    pub acked: bool,
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        cutover_common::fsutil::create_dir_with_mode(&dir, 0o700)?;
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        check_id(id).then(|| self.dir.join(format!("{id}.json")))
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        serde_json::from_slice(&std::fs::read(self.path(id)?).ok()?).ok()
    }

    fn put(&self, e: &Entry) -> std::io::Result<()> {
        let p = self
            .path(&e.command.id)
            .ok_or_else(|| std::io::Error::other("invalid command id"))?;
        let bytes = serde_json::to_vec(e).expect("serializable");
        crate::sys::write_synced(&p, &bytes, 0o600)
    }

    /// Records a command before acting on it.
    pub fn received(&self, c: &Command) -> std::io::Result<()> {
        self.put(&Entry {
            command: c.clone(),
            received_at_ms: cutover_common::time::now_ms(),
            result: None,
            acked: false,
        })
    }

    /// Records the result of a command.
    pub fn done(&self, r: &CommandResult) -> std::io::Result<()> {
        let mut e = self
            .get(&r.command_id)
            .ok_or_else(|| std::io::Error::other("command not journaled"))?;
        e.result = Some(r.clone());
        self.put(&e)
    }

    /// Marks a result as stored by the coordinator.
    pub fn ack(&self, id: &str) {
        if let Some(mut e) = self.get(id)
            && !e.acked
        {
            e.acked = true;
            let _ = self.put(&e);
        }
    }

    fn entries(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| serde_json::from_slice(&std::fs::read(d.path()).ok()?).ok())
            .collect();
        v.sort_by_key(|e: &Entry| e.received_at_ms);
        v
    }

    /// Commands received but not finished (the agent died while acting).
    pub fn unfinished(&self) -> Vec<Command> {
        self.entries()
            .into_iter()
            .filter(|e| e.result.is_none())
            .map(|e| e.command)
            .collect()
    }

    /// Results not yet acknowledged, oldest first.
    pub fn unacked(&self) -> Vec<CommandResult> {
        self.entries()
            .into_iter()
            .filter(|e| !e.acked)
            .filter_map(|e| e.result)
            .collect()
    }

    /// Forgets acknowledged entries beyond the newest `keep`.
    pub fn prune(&self, keep: usize) {
        let acked: Vec<Entry> = self.entries().into_iter().filter(|e| e.acked).collect();
        for e in acked.iter().take(acked.len().saturating_sub(keep)) {
            if let Some(p) = self.path(&e.command.id) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Kind;

    fn cmd(id: &str) -> Command {
        Command {
            id: id.into(),
            deployment_id: "d".into(),
            step: 0,
            epoch: 0,
            kind: Kind::Stop {
                keep_listeners: false,
                service: "web".into(),
            },
        }
    }

    fn result(id: &str) -> CommandResult {
        CommandResult {
            command_id: id.into(),
            deployment_id: "d".into(),
            ok: true,
            message: "m".into(),
            service: "web".into(),
            active_release: String::new(),
            previous_release: String::new(),
            hooks: vec![],
            finished_at_ms: 1,
        }
    }

    #[test]
    fn a_command_is_unfinished_until_done_and_unacked_until_acked() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path().join("j")).unwrap();
        j.received(&cmd("c1")).unwrap();
        assert_eq!(j.unfinished().len(), 1);
        j.done(&result("c1")).unwrap();
        assert!(j.unfinished().is_empty());
        assert_eq!(j.unacked(), vec![result("c1")]);
        j.ack("c1");
        assert!(j.unacked().is_empty());
        assert_eq!(j.get("c1").unwrap().result, Some(result("c1")));
    }

    #[test]
    fn ids_that_are_not_file_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path().join("j")).unwrap();
        assert!(j.received(&cmd("../evil")).is_err());
        assert!(j.get("../evil").is_none());
    }
}
