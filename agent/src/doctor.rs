//! `cutover-agent doctor`: runs a release once, the way a handover swap
//! would, and says which swap modes the app supports: does it take its
//! socket from `LISTEN_FDS`, does it send `READY=1`, does it exit on its
//! stop signal within the grace period.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cutover_common::service::ServiceSpec;

use crate::instance::{Instance, Launch};

/// What the doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub takes_listen_fds: bool,
    pub sends_ready: Option<Duration>,
    pub exits_on_signal: Option<Duration>,
    pub exited_early: Option<String>,
    /// An idle HTTP/1.1 keep-alive connection (as a load balancer's pool
    /// holds) was closed this long after the stop signal; None: still
    /// open when the grace ran out; not checked without an HTTP answer.
    pub closes_idle: Option<Option<Duration>>,
}

impl Findings {
    /// The findings for scripts (`cutover-agent doctor -o json`): the
    /// answers, durations in milliseconds, `null` where not seen.
    pub fn json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        serde_json::json!({
            "takes_listen_fds": self.takes_listen_fds,
            "sends_ready_ms": ms(self.sends_ready),
            "exits_on_signal_ms": ms(self.exits_on_signal),
            "exited_early": self.exited_early,
            "closes_idle_checked": self.closes_idle.is_some(),
            "closes_idle_ms": ms(self.closes_idle.flatten()),
        })
    }

    /// The verdict, one line per question and mode.
    pub fn render(&self, grace: Duration) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut out = String::new();
        if let Some(e) = &self.exited_early {
            out.push_str(&format!("the app {e} on its own: fix that first\n"));
        }
        out.push_str(&format!(
            "takes its socket from LISTEN_FDS:  {}\n",
            yes(self.takes_listen_fds)
        ));
        out.push_str(&format!(
            "sends READY=1:                     {}\n",
            self.sends_ready
                .map(|d| format!("yes, after {}ms", d.as_millis()))
                .unwrap_or_else(|| "no".into())
        ));
        out.push_str(&format!(
            "exits on its stop signal in grace: {}\n",
            self.exits_on_signal
                .map(|d| format!("yes, in {}ms", d.as_millis()))
                .unwrap_or_else(|| format!(
                    "no (still running after {})",
                    humantime::format_duration(grace)
                ))
        ));
        out.push_str(&format!(
            "closes idle keep-alive connections: {}\n",
            match self.closes_idle {
                None => "not checked (no HTTP/1.1 answer)".to_string(),
                Some(Some(d)) => format!("yes, {}ms after its stop signal", d.as_millis()),
                Some(None) => format!(
                    "no (still open after {}): a balancer's idle pooled connections would hold it until SIGKILL",
                    humantime::format_duration(grace)
                ),
            }
        ));
        let handover = self.takes_listen_fds && self.exits_on_signal.is_some();
        out.push_str(&format!(
            "\nmode = \"handover\": {}\n",
            if handover {
                if self.sends_ready.is_some() {
                    "supported"
                } else {
                    "supported with a readiness probe aimed at the instance (the app sends no READY=1)"
                }
            } else if !self.takes_listen_fds {
                "not supported: the app ignores LISTEN_FDS"
            } else {
                "not supported: the app does not stop on its signal"
            }
        ));
        out.push_str(&format!(
            "mode = \"reuseport\": {}\n",
            if self.exits_on_signal.is_some() {
                "possible if the app binds with SO_REUSEPORT (not checked)"
            } else {
                "not supported: the app does not stop on its signal"
            }
        ));
        out.push_str("mode = \"restart\":   supported (a gap on this host)\n");
        out
    }
}

/// Runs the app in `release_dir` with `command` on a fresh loopback socket.
pub async fn examine(
    release_dir: &Path,
    command: Vec<String>,
    grace: Duration,
    work: &Path,
) -> Result<Findings, String> {
    let spec: ServiceSpec = cutover_common::service::parse_toml(&format!(
        "service = \"doctor\"\n[run]\ncommand = {command:?}\n[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n"
    ))?;
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let fd = OwnedFd::from(l);
    let start = Instant::now();
    let inst = Instance::spawn(Launch {
        id: "doctor".into(),
        release: "doctor".into(),
        release_dir: release_dir.to_path_buf(),
        spec: &spec,
        listeners: vec![("http", &fd)],
        run_dir: work.join("run"),
        log_dir: work.join("logs"),
        journal_socket: crate::journal_out::JOURNAL_STDOUT.into(),
        wake: Default::default(),
    })
    .map_err(|e| cutover_common::error_chain(&e))?;
    let mut notify = inst.notify.clone();
    let sends_ready = tokio::time::timeout(Duration::from_secs(10), notify.wait_for(|s| s.ready))
        .await
        .ok()
        .map(|_| start.elapsed());
    let exited_early = inst.exited.borrow().clone().map(|e| e.description);
    // Does anything answer on the socket the app was given?
    let takes_listen_fds = tokio::task::spawn_blocking(move || {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: doctor\r\n\r\n");
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(1))
    })
    .await
    .unwrap_or(false);
    // A connection left idle after one keep-alive request, as a load
    // balancer's pool holds them: the app contract has it closed on the
    // stop signal.
    let idle = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: doctor\r\n\r\n")
            .ok()?;
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).ok()?;
        (n > 0 && b.starts_with(b"HTTP/1.1")).then_some(s)
    })
    .await
    .ok()
    .flatten();
    let t = Instant::now();
    let _ = inst.signal(rustix::process::Signal::TERM);
    let closed = idle.map(|mut s| {
        tokio::task::spawn_blocking(move || {
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            let mut b = [0u8; 4096];
            while t.elapsed() < grace {
                match s.read(&mut b) {
                    Ok(0) => return Some(t.elapsed()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Some(t.elapsed()),
                }
            }
            None
        })
    });
    let exits_on_signal = inst.wait_exit(grace).await.then(|| t.elapsed());
    let closes_idle = match closed {
        Some(h) => Some(h.await.ok().flatten()),
        None => None,
    };
    let _ = crate::sys::signal_group(inst.pid(), rustix::process::Signal::KILL);
    Ok(Findings {
        takes_listen_fds,
        sends_ready,
        exits_on_signal,
        exited_early,
        closes_idle,
    })
}

/// The work directory for a doctor run.
pub fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cutover-doctor-{}", std::process::id()))
}
