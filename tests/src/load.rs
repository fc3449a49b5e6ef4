//! A load client that keeps sending HTTP requests to a host during a
//! scenario and records every outcome with the version that answered:
//! some workers reuse one keep-alive connection, others open a fresh
//! connection for every request. Bounded in time by the caller, and only
//! ever aimed at addresses the test created.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, with the version from `x-version`.
    Ok {
        version: String,
    },
    /// A non-2xx answer.
    Status {
        status: u16,
        version: String,
    },
    /// The connection was refused.
    Refused,
    /// Reset or closed before a whole response arrived.
    Reset(String),
    Timeout,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Record {
    pub started: Instant,
    /// When the answer (or the failure) came.
    pub ended: Instant,
    pub keepalive: bool,
    pub outcome: Outcome,
}

/// Counts of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub ok: usize,
    pub non_2xx: usize,
    pub refused: usize,
    pub reset: usize,
    pub timeout: usize,
}

impl Counts {
    pub fn failed(&self) -> usize {
        self.non_2xx + self.refused + self.reset + self.timeout
    }
    pub fn total(&self) -> usize {
        self.ok + self.failed()
    }
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    workers: Vec<JoinHandle<()>>,
}

fn request(stream: &mut TcpStream, keepalive: bool) -> Result<(u16, String, bool), Outcome> {
    let req = if keepalive {
        "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    };
    let classify = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Reset(e.to_string()),
    };
    stream.write_all(req.as_bytes()).map_err(classify)?;
    let mut r = BufReader::new(&mut *stream);
    let mut line = String::new();
    if r.read_line(&mut line).map_err(classify)? == 0 {
        return Err(Outcome::Reset("closed before the status line".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Outcome::Reset(format!("bad status line {line:?}")))?;
    let (mut len, mut version, mut close) = (0usize, String::new(), false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(classify)? == 0 {
            return Err(Outcome::Reset("closed inside the headers".into()));
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
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(classify)?;
    Ok((status, version, close))
}

fn worker(
    addr: SocketAddr,
    keepalive: bool,
    every: Option<Duration>,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut local = Vec::new();
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Paced: a request is due every `every`. One sent on time is timed
        // from when it went; one that is late, because the requests before
        // it were slow, from when it was due, so that a stall counts for
        // every request it held up.
        let started = match every {
            None => Instant::now(),
            Some(every) => {
                let now = Instant::now();
                let started = if now < due {
                    std::thread::sleep(due - now);
                    Instant::now()
                } else {
                    due
                };
                due += every;
                started
            }
        };
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                }
                Err(e) => {
                    let outcome = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        Outcome::Refused
                    } else if e.kind() == std::io::ErrorKind::TimedOut {
                        Outcome::Timeout
                    } else {
                        Outcome::Reset(e.to_string())
                    };
                    local.push(Record {
                        started,
                        ended: Instant::now(),
                        keepalive,
                        outcome,
                    });
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected");
        let outcome = match request(s, keepalive) {
            Ok((status, version, close)) => {
                if close || !keepalive {
                    conn = None;
                }
                if (200..300).contains(&status) {
                    Outcome::Ok { version }
                } else {
                    Outcome::Status { status, version }
                }
            }
            Err(o) => {
                conn = None;
                o
            }
        };
        local.push(Record {
            started,
            ended: Instant::now(),
            keepalive,
            outcome,
        });
        if local.len() >= 256 {
            records.lock().unwrap().append(&mut local);
        }
    }
    records.lock().unwrap().append(&mut local);
}

impl Load {
    /// Starts `keepalive` workers reusing connections and `fresh` workers
    /// opening one per request, all aimed at `addr`.
    pub fn start(addr: SocketAddr, keepalive: usize, fresh: usize) -> Load {
        Self::start_paced(addr, keepalive, fresh, None)
    }

    /// The same with `rate` requests a second in all (an open loop, below
    /// what the host can serve) instead of each worker sending as fast as
    /// answers come (a closed loop, which keeps every core busy).
    pub fn start_paced(
        addr: SocketAddr,
        keepalive: usize,
        fresh: usize,
        rate: Option<u32>,
    ) -> Load {
        let workers = keepalive + fresh;
        let every = rate.map(|r| Duration::from_secs_f64(workers as f64 / f64::from(r.max(1))));
        assert!(
            addr.ip().is_loopback() || is_test_net(addr.ip()),
            "load is only for test addresses: {addr}"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|i| {
                let (stop, records) = (stop.clone(), records.clone());
                std::thread::spawn(move || worker(addr, i < keepalive, every, stop, records))
            })
            .collect();
        Load {
            stop,
            records,
            workers,
        }
    }

    /// Stops the workers and returns every record, oldest first.
    pub fn stop(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let mut v = std::mem::take(&mut *self.records.lock().unwrap());
        v.sort_by_key(|r| r.started);
        v
    }

    /// Requests recorded so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// 198.18.0.0/15, where namespace test hosts live.
pub fn is_test_net(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] == 18 || o[1] == 19)
        }
        _ => false,
    }
}

/// Tallies records.
pub fn counts(records: &[Record]) -> Counts {
    let mut c = Counts::default();
    for r in records {
        match r.outcome {
            Outcome::Ok { .. } => c.ok += 1,
            Outcome::Status { .. } => c.non_2xx += 1,
            Outcome::Refused => c.refused += 1,
            Outcome::Reset(_) => c.reset += 1,
            Outcome::Timeout => c.timeout += 1,
        }
    }
    c
}
