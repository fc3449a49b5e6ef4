//! A service's output for `cutover logs`: the newest lines of its
//! instances' output files (`services/<service>/logs/<instance>.log`,
//! stdout and stderr together), then, when following, lines as they are
//! written, including those of instances started meanwhile (a swap).
//!
//! Bounded: at most [`MAX_TAIL`] lines first, each line at most
//! [`MAX_LINE`] bytes, at most 256 KiB read per file per poll,
//! and a few requests at once per session (the session's caller).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cutover_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longer lines are cut here.
pub use cutover_common::wire::LOGS_MAX_LINE as MAX_LINE;
/// The most lines sent first.
pub use cutover_common::wire::LOGS_MAX_TAIL as MAX_TAIL;
/// Read per file per poll when following.
const MAX_READ: u64 = 256 * 1024;
/// Lines per chunk.
const CHUNK: usize = 256;
/// How often a follow looks for new output.
const POLL: Duration = Duration::from_millis(250);
/// Files looked at: the newest ones (an instance per swap, older ones are
/// history).
const MAX_FILES: usize = 4;

/// Answers `req` from the service directories under `services`, sending
/// chunks on `tx` until done or `cancel`.
pub async fn serve(
    services: PathBuf,
    req: pb::LogsRequest,
    tx: mpsc::Sender<pb::AgentMessage>,
    cancel: CancellationToken,
) {
    let id = req.request_id.clone();
    let send = |lines: Vec<pb::LogLine>, done: bool, error: String| {
        let tx = tx.clone();
        let id = id.clone();
        async move {
            tx.send(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Logs(pb::LogChunk {
                    request_id: id,
                    lines,
                    done,
                    error,
                })),
            })
            .await
            .is_ok()
        }
    };
    if let Err(e) = cutover_common::identity::check_name(&req.service) {
        send(vec![], true, format!("service `{}`: {e}", req.service)).await;
        return;
    }
    let dir = services.join(&req.service).join("logs");
    let has_files = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| is_log(&e.path()));
    if !has_files {
        let why = if services.join(&req.service).is_dir() {
            format!(
                "service `{0}` has no output files on this host (with `[run] output = \"journal\"` its output is in the journal: `journalctl -t {0}`)",
                req.service
            )
        } else {
            format!("service `{}` has run nothing on this host", req.service)
        };
        send(vec![], true, why).await;
        return;
    }
    let since = (req.since_ms > 0)
        .then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(req.since_ms as u64));
    let files = newest_files(&dir, since);
    let (lines, mut offsets) = tail(&files, req.tail_lines.min(MAX_TAIL) as usize);
    for chunk in chunks(lines) {
        if !send(chunk, false, String::new()).await {
            return;
        }
    }
    if !req.follow {
        send(vec![], true, String::new()).await;
        return;
    }
    // Following: every file seen so far from where the tail ended, and
    // files that appear (new instances) from their start.
    let mut partial: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = f.path();
        if is_log(&p) && !offsets.contains_key(&p) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            offsets.insert(p, len);
        }
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let mut lines = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_log(p))
            .collect();
        paths.sort_by_key(|p| mtime(p));
        for p in paths {
            let from = offsets.get(&p).copied().unwrap_or(0);
            let (bytes, to) = read_from(&p, from, MAX_READ);
            offsets.insert(p.clone(), to);
            if bytes.is_empty() {
                continue;
            }
            let buf = partial.entry(p.clone()).or_default();
            buf.extend_from_slice(&bytes);
            let instance = instance_of(&p);
            // Whole lines; a partial one waits for its end (unless long).
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                lines.push(line_of(&instance, &line[..line.len() - 1]));
            }
            if buf.len() > MAX_LINE {
                let line: Vec<u8> = std::mem::take(buf);
                lines.push(line_of(&instance, &line));
            }
        }
        for chunk in chunks(lines) {
            if !send(chunk, false, String::new()).await {
                return;
            }
        }
    }
}

fn is_log(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "log")
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn instance_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn line_of(instance: &str, bytes: &[u8]) -> pb::LogLine {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE)]).into_owned();
    if text.ends_with('\r') {
        text.pop();
    }
    pb::LogLine {
        instance: instance.to_string(),
        text,
    }
}

/// The newest output files (oldest first), of those written since `since`.
fn newest_files(dir: &Path, since: Option<SystemTime>) -> Vec<PathBuf> {
    let mut files: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_log(p))
        .map(|p| (mtime(&p), p))
        .filter(|(t, _)| since.is_none_or(|s| *t >= s))
        .collect();
    files.sort();
    let skip = files.len().saturating_sub(MAX_FILES);
    files.into_iter().skip(skip).map(|(_, p)| p).collect()
}

/// The last `n` lines of `files` (oldest file first), and where each file
/// ended.
fn tail(files: &[PathBuf], n: usize) -> (Vec<pb::LogLine>, HashMap<PathBuf, u64>) {
    let mut offsets = HashMap::new();
    let mut lines: Vec<pb::LogLine> = Vec::new();
    for p in files {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        // Enough of the end for n lines of ordinary length.
        let want = (n as u64 * 256).clamp(64 * 1024, 4 << 20);
        let from = len.saturating_sub(want);
        let (bytes, to) = read_from(p, from, want);
        offsets.insert(p.clone(), to);
        let instance = instance_of(p);
        let mut parts: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if from > 0 && !parts.is_empty() {
            // The first piece is the end of a line begun before `from`.
            parts.remove(0);
        }
        if parts.last().is_some_and(|l| l.is_empty()) {
            parts.pop();
        }
        lines.extend(parts.into_iter().map(|l| line_of(&instance, l)));
    }
    let skip = lines.len().saturating_sub(n);
    (lines.into_iter().skip(skip).collect(), offsets)
}

/// Up to `limit` bytes of `p` from `from`; and the offset after them.
fn read_from(p: &Path, from: u64, limit: u64) -> (Vec<u8>, u64) {
    let Ok(mut f) = std::fs::File::open(p) else {
        return (Vec::new(), from);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Truncated (rotated by hand): from its start.
    let from = if len < from { 0 } else { from };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return (Vec::new(), from);
    }
    let mut buf = Vec::new();
    let _ = f.take(limit).read_to_end(&mut buf);
    let to = from + buf.len() as u64;
    (buf, to)
}

fn chunks(lines: Vec<pb::LogLine>) -> Vec<Vec<pb::LogLine>> {
    let mut out = Vec::new();
    let mut it = lines.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(CHUNK).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(
        services: &Path,
        req: pb::LogsRequest,
    ) -> (mpsc::Receiver<pb::AgentMessage>, CancellationToken) {
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        tokio::spawn(serve(services.into(), req, tx, cancel.clone()));
        (rx, cancel)
    }

    fn chunk(m: pb::AgentMessage) -> pb::LogChunk {
        match m.body {
            Some(pb::agent_message::Body::Logs(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_newest_lines_come_first_then_new_lines_of_every_instance_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("web").join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let old = logs.join("aaaa.log");
        let text: String = (1..=300).map(|i| format!("old {i}\n")).collect();
        std::fs::write(&old, text).unwrap();
        let req = |tail, follow| pb::LogsRequest {
            request_id: "r1".into(),
            service: "web".into(),
            tail_lines: tail,
            since_ms: 0,
            follow,
        };
        // Not following: the last 5 lines, then done.
        let (mut rx, _c) = collect(dir.path(), req(5, false)).await;
        let first = chunk(rx.recv().await.unwrap());
        let texts: Vec<&str> = first.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            ["old 296", "old 297", "old 298", "old 299", "old 300"]
        );
        assert_eq!(first.lines[0].instance, "aaaa");
        assert!(chunk(rx.recv().await.unwrap()).done);
        // Following: lines appended, and a new instance's file.
        let (mut rx, cancel) = collect(dir.path(), req(1, true)).await;
        assert_eq!(chunk(rx.recv().await.unwrap()).lines[0].text, "old 300");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        write!(f, "more 1\nhalf").unwrap();
        std::fs::write(logs.join("bbbb.log"), "new instance serving\n").unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let c = chunk(
                tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
            got.extend(
                c.lines
                    .into_iter()
                    .map(|l| format!("{} {}", l.instance, l.text)),
            );
        }
        got.sort();
        assert_eq!(got, ["aaaa more 1", "bbbb new instance serving"]);
        // The partial line comes once it ends.
        writeln!(f, " done").unwrap();
        let c = chunk(
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
        assert_eq!(c.lines[0].text, "half done");
        cancel.cancel();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_bad_or_unknown_service_is_answered_with_an_error_and_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ask = |service: &str| pb::LogsRequest {
            request_id: "r".into(),
            service: service.into(),
            tail_lines: 10,
            since_ms: 0,
            follow: false,
        };
        let (mut rx, _c) = collect(dir.path(), ask("../etc")).await;
        let c = chunk(rx.recv().await.unwrap());
        assert!(c.done && c.error.contains("../etc"), "{c:?}");
        let (mut rx, _c) = collect(dir.path(), ask("db")).await;
        let c = chunk(rx.recv().await.unwrap());
        assert!(c.done && c.error.contains("has run nothing"), "{c:?}");
        // A service that writes to the journal: said so.
        std::fs::create_dir_all(dir.path().join("jrnl")).unwrap();
        let (mut rx, _c) = collect(dir.path(), ask("jrnl")).await;
        let c = chunk(rx.recv().await.unwrap());
        assert!(c.done && c.error.contains("journalctl -t jrnl"), "{c:?}");
        // A 10 KiB line is cut to 4 KiB.
        let logs = dir.path().join("big").join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("i.log"), format!("{}\n", "x".repeat(10_000))).unwrap();
        let (mut rx, _c) = collect(dir.path(), ask("big")).await;
        let c = chunk(rx.recv().await.unwrap());
        assert_eq!(c.lines[0].text.len(), MAX_LINE);
    }
}
