//! `cutover logs`: a service's output from the hosts running it, asked of
//! their agents over the sessions already open (`LogsRequest`), answered in
//! `LogChunk`s routed here by request id to the operator's stream.
//!
//! Bounded: the hosts of one request (at most [`MAX_HOSTS`]), the lines a
//! slow reader may leave waiting ([`BUFFER`]: more are dropped, and it is
//! told so once), and a host answers only requests it was sent.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cutover_proto::v1 as pb;
use tokio::sync::mpsc;

/// Hosts one request may ask.
pub const MAX_HOSTS: usize = 200;
/// Lines waiting for a slow reader before more are dropped.
pub const BUFFER: usize = 4096;

/// Requests waiting for their hosts' chunks.
#[derive(Debug, Default)]
pub struct LogsHub {
    waiting: Mutex<HashMap<String, Waiting>>,
}

#[derive(Debug)]
struct Waiting {
    /// Hosts asked, and not done yet.
    open: HashSet<String>,
    asked: HashSet<String>,
    tx: mpsc::Sender<pb::LogEvent>,
    /// Hosts whose lines were dropped (told once each).
    dropped: HashSet<String>,
}

impl LogsHub {
    /// A request `id` sent to `hosts`; its events go to `tx`.
    pub fn register(&self, id: &str, hosts: &[String], tx: mpsc::Sender<pb::LogEvent>) {
        let set: HashSet<String> = hosts.iter().cloned().collect();
        self.lock().insert(
            id.to_string(),
            Waiting {
                open: set.clone(),
                asked: set,
                tx,
                dropped: HashSet::new(),
            },
        );
    }

    /// Forgets request `id` (its reader went away or it is done).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A chunk from `host`. Chunks for requests it was not sent are
    /// ignored. When every host is done, the stream ends.
    pub fn deliver(&self, host: &str, chunk: pb::LogChunk) {
        let mut all = self.lock();
        let Some(w) = all.get_mut(&chunk.request_id) else {
            return;
        };
        if !w.asked.contains(host) {
            tracing::warn!(host, request = %chunk.request_id, "log lines for a request this host was not sent; ignored");
            return;
        }
        let mut events: Vec<pb::LogEvent> = chunk
            .lines
            .into_iter()
            .map(|mut l| {
                cut(&mut l.text, cutover_common::wire::LOGS_MAX_LINE);
                cut(&mut l.instance, 64);
                pb::LogEvent {
                    host: host.to_string(),
                    instance: l.instance,
                    text: l.text,
                    error: String::new(),
                }
            })
            .collect();
        if !chunk.error.is_empty() {
            let mut e = chunk.error;
            cut(&mut e, 512);
            events.push(pb::LogEvent {
                host: host.to_string(),
                error: e,
                ..Default::default()
            });
        }
        for e in events {
            if w.tx.try_send(e).is_err() && w.dropped.insert(host.to_string()) {
                tracing::warn!(host, request = %chunk.request_id, "a slow reader: log lines dropped");
            }
        }
        if chunk.done {
            w.open.remove(host);
        }
        if w.open.is_empty() {
            // Dropping the sender ends the operator's stream.
            all.remove(&chunk.request_id);
        }
    }

    /// `host` will send nothing more (its session ended).
    pub fn host_gone(&self, host: &str) {
        let mut all = self.lock();
        let mut finished = Vec::new();
        for (id, w) in all.iter_mut() {
            if w.open.remove(host) {
                let _ = w.tx.try_send(pb::LogEvent {
                    host: host.to_string(),
                    error: "the host's session ended".into(),
                    ..Default::default()
                });
                if w.open.is_empty() {
                    finished.push(id.clone());
                }
            }
        }
        for id in finished {
            all.remove(&id);
        }
    }
}

/// Exactly at `max` bytes (on a character boundary): the agent cuts lines
/// at `LOGS_MAX_LINE`; a host sending longer is cut here, without the
/// display suffix `grpc::agent` adds to its messages.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, text: &str, done: bool) -> pb::LogChunk {
        pb::LogChunk {
            request_id: id.into(),
            lines: vec![pb::LogLine {
                instance: "i1".into(),
                text: text.into(),
            }],
            done,
            error: String::new(),
        }
    }

    #[tokio::test]
    async fn chunks_reach_their_request_only_from_hosts_asked_and_the_stream_ends_when_all_are_done()
     {
        let hub = LogsHub::default();
        let (tx, mut rx) = mpsc::channel(16);
        hub.register("r1", &["web-1".into(), "web-2".into()], tx);
        hub.deliver("web-1", chunk("r1", "a", false));
        // Another host, another request: ignored.
        hub.deliver("db-1", chunk("r1", "forged", true));
        hub.deliver("web-1", chunk("r2", "elsewhere", true));
        hub.deliver("web-1", chunk("r1", "b", true));
        hub.host_gone("web-2");
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(format!("{} {}{}", e.host, e.text, e.error));
        }
        assert_eq!(
            got,
            ["web-1 a", "web-1 b", "web-2 the host's session ended"]
        );
    }

    #[tokio::test]
    async fn a_slow_reader_loses_lines_not_the_coordinator_memory() {
        let hub = LogsHub::default();
        let (tx, mut rx) = mpsc::channel(2);
        hub.register("r", &["h".into()], tx);
        for i in 0..10 {
            hub.deliver("h", chunk("r", &i.to_string(), false));
        }
        hub.deliver("h", chunk("r", "x".repeat(10_000).as_str(), true));
        let mut n = 0;
        while let Some(e) = rx.recv().await {
            assert!(e.text.len() <= 4096);
            n += 1;
        }
        assert_eq!(n, 2, "the buffer's worth");
    }
}
