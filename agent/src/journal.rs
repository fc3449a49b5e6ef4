//! The command journal: every command is written (fsync) before the agent
//! acts on it, and its result after; a repeated `command_id` is answered
//! from here, so commands are idempotent across reconnects, coordinator
//! restarts and agent restarts. Results stay unacknowledged until the
//! coordinator acks them.
//!
//! An ack is an empty marker beside the entry (`<command_id>.acked`),
//! created without an fsync: losing one in a crash only means the result
//! is sent again (the same result, which the coordinator applies once).
//! The entry itself, which holds the result, is never rewritten for an
//! ack (an unsynced rewrite could leave it empty after a crash on some
//! filesystems, losing the result).

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult, check_id};

/// One journal entry (`journal/<command_id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub command: Command,
    pub received_at_ms: i64,
    pub result: Option<CommandResult>,
    /// Acknowledged, as journals before the `.acked` markers recorded it
    /// (read, never written true now).
    #[serde(default)]
    pub acked: bool,
}

const ENTRY: &str = ".json";
const ACKED: &str = ".acked";

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
        check_id(id).then(|| self.dir.join(format!("{id}{ENTRY}")))
    }

    fn ack_path(&self, id: &str) -> Option<PathBuf> {
        check_id(id).then(|| self.dir.join(format!("{id}{ACKED}")))
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

    /// Marks a result as stored by the coordinator (not durably: see the
    /// module docs).
    pub fn ack(&self, id: &str) {
        let Some(marker) = self.ack_path(id) else {
            return;
        };
        if self.path(id).is_some_and(|p| p.exists())
            && let Err(e) = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&marker)
        {
            tracing::warn!(command = %id, error = %e, "recording an ack failed: the result will be sent again");
        }
    }

    /// Every entry, oldest first, with `acked` set from its marker.
    /// Markers whose entry is gone (a prune cut short) are removed.
    fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut acked = std::collections::HashSet::new();
        for d in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = d.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(ACKED) {
                acked.insert(id.to_string());
            } else if name.ends_with(ENTRY)
                && let Some(e) = std::fs::read(d.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            {
                entries.push(e);
            }
        }
        for e in &mut entries {
            e.acked |= acked.remove(&e.command.id);
        }
        for orphan in acked {
            if let Some(p) = self.ack_path(&orphan) {
                let _ = std::fs::remove_file(p);
            }
        }
        entries.sort_by_key(|e: &Entry| e.received_at_ms);
        entries
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
            // The entry first: a marker left by a prune cut short is
            // removed by the next listing, an entry left unmarked would
            // be sent again.
            if let Some(p) = self.path(&e.command.id) {
                let _ = std::fs::remove_file(p);
            }
            if let Some(p) = self.ack_path(&e.command.id) {
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
            term: 0,
            kind: Kind::Stop {
                keep_listeners: false,
                service: "web".into(),
                include_drained: false,
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
            pid: 0,
            drained: false,
            failure: None,
            staged: Vec::new(),
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
        // As a restarted agent finds it.
        let j = Journal::open(d.path().join("j")).unwrap();
        assert!(j.unacked().is_empty());
        assert!(j.unfinished().is_empty());
    }

    #[test]
    fn prune_forgets_old_acked_entries_and_their_markers_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("j");
        let j = Journal::open(dir.clone()).unwrap();
        // Entries are ordered by when they were received.
        for (at, id) in [(1, "c1"), (2, "c2"), (3, "c3")] {
            j.put(&Entry {
                command: cmd(id),
                received_at_ms: at,
                result: Some(result(id)),
                acked: false,
            })
            .unwrap();
        }
        j.ack("c1");
        j.ack("c2");
        j.prune(1);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c2.acked", "c2.json", "c3.json"]);
        assert_eq!(j.unacked(), vec![result("c3")]);
        // A repeated command is still answered from a kept entry.
        assert_eq!(j.get("c2").unwrap().result, Some(result("c2")));
    }

    #[test]
    fn an_ack_of_an_unknown_command_records_nothing_and_a_stray_marker_is_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("j");
        let j = Journal::open(dir.clone()).unwrap();
        j.ack("never-sent");
        assert!(!dir.join("never-sent.acked").exists());
        std::fs::write(dir.join("gone.acked"), b"").unwrap();
        assert!(j.unacked().is_empty());
        assert!(!dir.join("gone.acked").exists());
    }

    #[test]
    fn an_entry_acked_by_an_older_agent_stays_acked() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("j");
        let j = Journal::open(dir.clone()).unwrap();
        let old = Entry {
            command: cmd("c1"),
            received_at_ms: 1,
            result: Some(result("c1")),
            acked: true,
        };
        std::fs::write(dir.join("c1.json"), serde_json::to_vec(&old).unwrap()).unwrap();
        assert!(j.unacked().is_empty());
    }

    #[test]
    fn ids_that_are_not_file_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path().join("j")).unwrap();
        assert!(j.received(&cmd("../evil")).is_err());
        assert!(j.get("../evil").is_none());
    }
}
