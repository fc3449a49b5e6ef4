//! A local artifact server: serves files from a directory over plain HTTP
//! on 127.0.0.1 with `Range` support, records each request, and can cut a
//! response short (to test resumed downloads).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A running artifact server; stops when dropped.
#[derive(Debug)]
pub struct ArtifactServer {
    pub addr: SocketAddr,
    /// "GET /name range=..." for each request.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// When non-zero, the next response is cut after this many body bytes.
    pub cut_next_after: Arc<AtomicU64>,
    /// While non-zero, requests are answered 503 (an artifact server
    /// restarting), each taking one off.
    pub unavailable_for: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ArtifactServer {
    pub fn start(dir: PathBuf) -> ArtifactServer {
        Self::start_on("127.0.0.1".parse().unwrap(), dir)
    }

    /// [`ArtifactServer::start`] on address `ip` (a namespaced fleet's
    /// gateway, so that its hosts reach it).
    pub fn start_on(ip: std::net::IpAddr, dir: PathBuf) -> ArtifactServer {
        let l = TcpListener::bind((ip, 0)).expect("binding the artifact server");
        let addr = l.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let unavailable = Arc::new(AtomicU64::new(0));
        let (r2, c2, s2) = (requests.clone(), cut.clone(), stop.clone());
        let u2 = unavailable.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                // One thread per download: a client cut off mid-transfer
                // (a partitioned host) must not hold up the others.
                let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(30)));
                let (r2, c2, dir, u2) = (r2.clone(), c2.clone(), dir.clone(), u2.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .trim_start_matches('/')
                        .to_string();
                    let mut range_start: Option<u64> = None;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            range_start = v.trim().trim_end_matches('-').parse().ok();
                        }
                    }
                    r2.lock()
                        .unwrap()
                        .push(format!("GET /{path} range={range_start:?}"));
                    if u2
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let _ = conn.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(data) = std::fs::read(dir.join(&path)) else {
                        let _ = conn.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    };
                    let (status, body) = match range_start {
                        Some(s) if (s as usize) < data.len() => {
                            ("206 Partial Content", &data[s as usize..])
                        }
                        Some(_) => {
                            let _ = conn.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                            return;
                        }
                        None => ("200 OK", &data[..]),
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let cut = c2.swap(0, Ordering::SeqCst);
                    let send = if cut > 0 {
                        &body[..(cut as usize).min(body.len())]
                    } else {
                        body
                    };
                    let _ = conn.write_all(send);
                });
            }
        });
        ArtifactServer {
            addr,
            requests,
            cut_next_after: cut,
            unavailable_for: unavailable,
            stop,
        }
    }

    /// The URL of a file served from the directory.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }
}

impl Drop for ArtifactServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
