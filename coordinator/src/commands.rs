//! Commands in flight to hosts: who is waiting for their progress and
//! results. The session that receives a result hands it here; the caller
//! that sent the command (an operator's `SendCommand`, later the rollout
//! engine) receives it.

use std::collections::HashMap;
use std::sync::Mutex;

use cutover_proto::v1 as pb;
use tokio::sync::mpsc;

/// Waiters by command id.
#[derive(Debug, Default)]
pub struct CommandHub {
    waiters: Mutex<HashMap<String, mpsc::Sender<pb::command_event::Event>>>,
}

impl CommandHub {
    /// Registers interest in `id` (before sending it).
    pub fn watch(&self, id: &str) -> mpsc::Receiver<pb::command_event::Event> {
        let (tx, rx) = mpsc::channel(256);
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.into(), tx);
        rx
    }

    /// Stops waiting for `id`.
    pub fn forget(&self, id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// A progress event arrived (dropped if nobody listens or they lag).
    pub fn progress(&self, p: pb::Progress) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&p.command_id)
        {
            let _ = tx.try_send(pb::command_event::Event::Progress(p));
        }
    }

    /// A result arrived: hand it to the waiter, which is then forgotten.
    pub fn result(&self, r: pb::CommandResult) {
        let tx = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&r.command_id);
        if let Some(tx) = tx {
            let _ = tx.try_send(pb::command_event::Event::Result(r));
        }
    }
}
