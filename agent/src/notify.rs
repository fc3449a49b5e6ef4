//! A private `NOTIFY_SOCKET` per instance: a datagram socket the app sends
//! `READY=1`, `STOPPING=1`, `STATUS=...` to (the sd_notify protocol).

use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;
use tokio::sync::watch;

/// What an instance has said on its notify socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyState {
    pub ready: bool,
    pub stopping: bool,
    pub status: String,
}

/// Applies one datagram to the state.
pub fn apply(state: &mut NotifyState, datagram: &str) {
    for line in datagram.lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => state.ready = true,
            Some(("STOPPING", "1")) => state.stopping = true,
            Some(("RELOADING", "1")) => state.ready = false,
            Some(("STATUS", s)) => state.status = s.chars().take(200).collect(),
            _ => {}
        }
    }
}

/// A bound notify socket; the file is removed on drop.
#[derive(Debug)]
pub struct NotifySocket {
    pub path: PathBuf,
    pub state: watch::Receiver<NotifyState>,
    task: tokio::task::JoinHandle<()>,
}

impl NotifySocket {
    /// Binds `path` (replacing a stale file) and starts listening.
    pub fn bind(path: &Path, initial: NotifyState) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)?;
        let (tx, rx) = watch::channel(initial);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                // Cancel-safe: the task is aborted as a whole on drop.
                let Ok(n) = sock.recv(&mut buf).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                tx.send_modify(|s| apply(s, &text));
            }
        });
        Ok(Self {
            path: path.into(),
            state: rx,
            task,
        })
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_update_readiness_and_status() {
        let mut s = NotifyState::default();
        apply(&mut s, "STATUS=warming up");
        assert!(!s.ready);
        apply(&mut s, "READY=1\nSTATUS=serving");
        assert!(s.ready);
        assert_eq!(s.status, "serving");
        apply(&mut s, "STOPPING=1");
        assert!(s.stopping);
    }

    #[tokio::test]
    async fn an_app_sending_ready_is_seen_on_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.sock");
        let mut n = NotifySocket::bind(&p, NotifyState::default()).unwrap();
        let c = std::os::unix::net::UnixDatagram::unbound().unwrap();
        c.send_to(b"READY=1", &p).unwrap();
        n.state.wait_for(|s| s.ready).await.unwrap();
        drop(n);
        assert!(!p.exists());
    }
}
