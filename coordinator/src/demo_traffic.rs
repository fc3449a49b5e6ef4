//! Clients for `cutover demo`: they keep sending requests to every demo
//! host while it deploys (some on one keep-alive connection, some with a
//! fresh connection per request) and count every outcome, with the version
//! that answered. Only ever aimed at the demo's own loopback addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Counts so far.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub ok: u64,
    /// Failures by kind (refused, reset, timeout, HTTP status).
    pub failed: BTreeMap<String, u64>,
    /// Answers by the version that gave them.
    pub by_version: BTreeMap<String, u64>,
}

impl Counts {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// "12,345 requests: 12,345 ok, 0 failed (v1 8,000, v2 4,345)".
    pub fn line(&self) -> String {
        let total = self.ok + self.failed_total();
        let versions: Vec<String> = self
            .by_version
            .iter()
            .map(|(v, n)| format!("v{v} {}", thousands(*n)))
            .collect();
        let mut s = format!(
            "{} requests: {} ok, {} failed",
            thousands(total),
            thousands(self.ok),
            thousands(self.failed_total())
        );
        if !self.failed.is_empty() {
            let kinds: Vec<String> = self
                .failed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            s.push_str(&format!(" [{}]", kinds.join(", ")));
        }
        if !versions.is_empty() {
            s.push_str(&format!(" ({})", versions.join(", ")));
        }
        s
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Running clients.
#[derive(Debug)]
pub struct Traffic {
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Two clients per address: one keep-alive, one fresh connection per
    /// request, each pacing itself so the demo stays light.
    pub fn start(addrs: &[SocketAddr]) -> Traffic {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for a in addrs {
            for keepalive in [true, false] {
                tasks.push(tokio::spawn(client(
                    *a,
                    keepalive,
                    counts.clone(),
                    stop.clone(),
                )));
            }
        }
        Traffic {
            counts,
            stop,
            tasks,
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A handle that reads the counts (for progress lines).
    pub fn reader(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let c = self.counts.clone();
        move || c.lock().unwrap_or_else(|p| p.into_inner()).line()
    }

    /// Stops the clients; the final counts.
    pub async fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.clone()
    }
}

async fn client(
    addr: SocketAddr,
    keepalive: bool,
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            if conn.is_none() {
                let s = TcpStream::connect(addr).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        "refused".to_string()
                    } else {
                        "connect error".to_string()
                    }
                })?;
                let _ = s.set_nodelay(true);
                conn = Some(BufReader::new(s));
            }
            let c = conn.as_mut().expect("connected");
            request(c, keepalive).await
        })
        .await
        .unwrap_or_else(|_| Err("timeout".into()));
        {
            let mut k = counts.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok((status, version, _)) if (200..300).contains(status) => {
                    k.ok += 1;
                    *k.by_version.entry(version.clone()).or_default() += 1;
                }
                Ok((status, _, _)) => *k.failed.entry(format!("HTTP {status}")).or_default() += 1,
                Err(e) => *k.failed.entry(e.clone()).or_default() += 1,
            }
        }
        match outcome {
            Ok((_, _, close)) if keepalive && !close => {}
            _ => conn = None,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `GET /`: (status, version, server closes).
async fn request(
    c: &mut BufReader<TcpStream>,
    keepalive: bool,
) -> Result<(u16, String, bool), String> {
    let req: &[u8] = if keepalive {
        b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
    };
    let reset = |_| "reset".to_string();
    c.get_mut().write_all(req).await.map_err(reset)?;
    let mut line = String::new();
    if c.read_line(&mut line).await.map_err(reset)? == 0 {
        return Err("reset".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad response")?;
    let (mut len, mut version, mut close) = (0usize, String::new(), false);
    loop {
        let mut h = String::new();
        if c.read_line(&mut h).await.map_err(reset)? == 0 {
            return Err("reset".into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "x-version" => version = v.trim().to_string(),
            "connection" => close = v.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    c.read_exact(&mut body).await.map_err(reset)?;
    Ok((status, version, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_like_a_person_would_write_them() {
        let mut c = Counts {
            ok: 12_345,
            ..Default::default()
        };
        c.by_version.insert("1".into(), 8_000);
        c.by_version.insert("2".into(), 4_345);
        assert_eq!(
            c.line(),
            "12,345 requests: 12,345 ok, 0 failed (v1 8,000, v2 4,345)"
        );
        c.failed.insert("refused".into(), 2);
        assert!(c.line().contains("2 failed [refused 2]"), "{}", c.line());
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
