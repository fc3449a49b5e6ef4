//! Commands to hosts, one path for rollouts and operators alike:
//! [`dispatch`] records them and sends them on their hosts' sessions; the
//! session that receives a result stores it and hands it here
//! (`grpc::agent::record_result`), and the [`CommandHub`] routes it to who
//! waits: an operator's `SendCommand`, or the rollout that sent it.
//! Waiters are keyed by (host, command id): a host can only answer for
//! commands sent to it.

use std::collections::HashMap;
use std::sync::Mutex;

use cutover_proto::v1 as pb;
use tokio::sync::mpsc;

/// Sends `commands` (host, command) for `sent_by` (an operator's actor,
/// or `deployment dN`): each one whose host has a live session is
/// recorded, then sent. The records are queued at once, so the writer
/// commits them in few transactions, and the first commands go out while
/// it commits the rest (10k hosts: the first Stage is not held up by
/// 10k records). Answers, per command, the session it went on; `None`: no
/// live session, or it closed (not sent; send it again later). A store
/// failure stops the sending there.
pub async fn dispatch(
    app: &crate::app::App,
    commands: Vec<(String, pb::Command)>,
    sent_by: &str,
) -> Result<Vec<Option<String>>, crate::store::StoreError> {
    let now = cutover_common::time::now_ms();
    let term = app.term();
    let routed: Vec<_> = commands
        .into_iter()
        .map(|(host, mut cmd)| {
            // The leader term: agents refuse a deposed leader's commands.
            cmd.term = term;
            let session = app.fleet.session_sender(&host);
            (host, cmd, session)
        })
        .collect();
    let records = routed
        .iter()
        .filter(|(_, _, session)| session.is_some())
        .map(|(host, cmd, _)| crate::store::BatchedWrite::CommandSent {
            id: cmd.command_id.clone(),
            host: host.clone(),
            deployment_id: cmd.deployment_id.clone(),
            kind: kind_name(cmd).into(),
            sent_by: sent_by.into(),
            at_ms: now,
        })
        .collect();
    let mut recorded = app.store.queue_all(records)?.into_iter();
    let mut out = Vec::with_capacity(routed.len());
    for (_, cmd, session) in routed {
        let Some((session, tx)) = session else {
            out.push(None);
            continue;
        };
        if let Some(w) = recorded.next() {
            w.written().await?;
        }
        app.metrics.command_sent(kind_name(&cmd));
        let msg = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Command(cmd)),
        };
        out.push(tx.send(Box::new(msg)).await.is_ok().then_some(session));
    }
    Ok(out)
}

/// The command's kind as recorded and counted (`stage`, `drain`, ...).
pub fn kind_name(c: &pb::Command) -> &'static str {
    c.kind
        .as_ref()
        .map_or("none", crate::grpc::command_kind_name)
}

fn key(host: &str, id: &str) -> (String, String) {
    (host.to_string(), id.to_string())
}

/// Waiters by (host, command id).
#[derive(Debug, Default)]
pub struct CommandHub {
    waiters: Mutex<HashMap<(String, String), mpsc::Sender<pb::command_event::Event>>>,
    /// Rollout runners, by deployment id: every result of their commands.
    deployments: Mutex<HashMap<String, mpsc::UnboundedSender<(String, pb::CommandResult)>>>,
}

impl CommandHub {
    /// Commands waited on now.
    pub fn in_flight(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Registers interest in `id` on `host` (before sending it).
    pub fn watch(&self, host: &str, id: &str) -> mpsc::Receiver<pb::command_event::Event> {
        let (tx, rx) = mpsc::channel(256);
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(host, id), tx);
        rx
    }

    /// Stops waiting for `id` on `host`.
    pub fn forget(&self, host: &str, id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(host, id));
    }

    /// A progress event arrived from `host` (dropped if nobody listens or
    /// they lag).
    pub fn progress(&self, host: &str, p: pb::Progress) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(host, &p.command_id))
        {
            let _ = tx.try_send(pb::command_event::Event::Progress(p));
        }
    }

    /// Subscribes a rollout runner to the results of its deployment.
    pub fn subscribe_deployment(
        &self,
        id: &str,
    ) -> mpsc::UnboundedReceiver<(String, pb::CommandResult)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.deployments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.into(), tx);
        rx
    }

    /// Ends a runner's subscription.
    pub fn unsubscribe_deployment(&self, id: &str) {
        self.deployments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// A result arrived from `host`: hand it to the waiter, which is then
    /// forgotten, and to the rollout it belongs to.
    pub fn result(&self, host: &str, r: pb::CommandResult) {
        // Agents of the previous release refuse a command they cannot read
        // without naming its deployment: a rollout's command ids start
        // with it (`d42-stage-3`).
        let deployment = if r.deployment_id.is_empty() {
            r.command_id
                .split_once('-')
                .map(|(d, _)| d)
                .filter(|d| {
                    d.len() > 1 && d.starts_with('d') && d[1..].bytes().all(|b| b.is_ascii_digit())
                })
                .unwrap_or_default()
        } else {
            r.deployment_id.as_str()
        };
        if !deployment.is_empty()
            && let Some(tx) = self
                .deployments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(deployment)
        {
            let _ = tx.send((host.to_string(), r.clone()));
        }
        let tx = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(host, &r.command_id));
        if let Some(tx) = tx {
            let _ = tx.try_send(pb::command_event::Event::Result(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_cannot_answer_for_a_command_sent_to_another() {
        let hub = CommandHub::default();
        let mut rx = hub.watch("a", "c1");
        hub.result(
            "b",
            pb::CommandResult {
                command_id: "c1".into(),
                ..Default::default()
            },
        );
        assert!(rx.try_recv().is_err());
        hub.result(
            "a",
            pb::CommandResult {
                command_id: "c1".into(),
                ok: true,
                ..Default::default()
            },
        );
        assert!(matches!(rx.try_recv(), Ok(pb::command_event::Event::Result(r)) if r.ok));
    }

    #[test]
    fn a_refusal_without_its_deployment_still_reaches_the_rollout() {
        let hub = CommandHub::default();
        let mut d7 = hub.subscribe_deployment("d7");
        let refusal = |id: &str| pb::CommandResult {
            command_id: id.into(),
            ok: false,
            message: "invalid command".into(),
            ..Default::default()
        };
        // As an agent of the previous release sends it.
        hub.result("web-1", refusal("d7-stage-1"));
        let (host, r) = d7.try_recv().expect("routed by its id");
        assert_eq!((host.as_str(), r.ok), ("web-1", false));
        // Ids that are not a rollout's go nowhere.
        hub.result("web-1", refusal("op-drain-1"));
        hub.result("web-1", refusal("d-stage-1"));
        assert!(d7.try_recv().is_err());
    }
}
