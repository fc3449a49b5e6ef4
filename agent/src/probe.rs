//! Probes: `notify`, `http`, `tcp`, `exec`, `grpc` checks, run on a
//! schedule with Kubernetes-style thresholds. Each running probe publishes
//! its [`ProbeStatus`] on a watch channel; swaps, supervision and health
//! reports read it. Check latencies and failures are also the samples the
//! coordinator's analysis compares.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cutover_common::service::{Check, Probe, ServiceSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::notify::NotifyState;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub latency: Duration,
    pub detail: String,
}

/// What a running probe knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeStatus {
    /// Passing by the thresholds.
    pub passing: bool,
    /// When it first passed (the bake time counts from here).
    pub first_pass: Option<Instant>,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub checks: u64,
    pub failed_checks: u64,
    pub last: Option<Outcome>,
    /// Latencies of recent checks in milliseconds (newest last, at most 64).
    pub recent_latency_ms: Vec<u32>,
}

impl ProbeStatus {
    /// Applies one outcome with the probe's thresholds (pure).
    pub fn record(
        &mut self,
        o: Outcome,
        success_threshold: u32,
        failure_threshold: u32,
        now: Instant,
    ) {
        self.checks += 1;
        if o.ok {
            self.consecutive_successes += 1;
            self.consecutive_failures = 0;
            if !self.passing && self.consecutive_successes >= success_threshold {
                self.passing = true;
                self.first_pass.get_or_insert(now);
            }
        } else {
            self.failed_checks += 1;
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
            if self.passing && self.consecutive_failures >= failure_threshold {
                self.passing = false;
            }
        }
        self.recent_latency_ms
            .push(o.latency.as_millis().min(u32::MAX as u128) as u32);
        if self.recent_latency_ms.len() > 64 {
            self.recent_latency_ms.remove(0);
        }
        self.last = Some(o);
    }

    /// Failing by the thresholds: it has failed `failure_threshold` times in
    /// a row (whether or not it ever passed).
    pub fn failing(&self, failure_threshold: u32) -> bool {
        self.consecutive_failures >= failure_threshold
    }
}

/// What a check may look at.
#[derive(Debug, Clone)]
pub struct Context {
    pub spec: ServiceSpec,
    pub release_dir: PathBuf,
    pub notify: watch::Receiver<NotifyState>,
    /// Where the agent's listeners are actually bound (a spec may say port
    /// 0), by listener name.
    pub bound: Vec<(String, std::net::SocketAddr)>,
    /// The instance judged: a network check counts only connections that
    /// one of its processes accepted (see [`crate::attribute`]). `None`
    /// judges whoever answers (tests).
    pub instance: Option<std::sync::Arc<crate::attribute::Judged>>,
    /// Woken when a probe's verdict changes.
    pub wake: crate::wake::Supervision,
}

impl Context {
    /// The address a probe target reaches.
    fn addr(&self, t: &cutover_common::service::Target) -> Option<std::net::SocketAddr> {
        if let Some(name) = &t.listener
            && let Some((_, a)) = self.bound.iter().find(|(n, _)| n == name)
        {
            let mut a = *a;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            return Some(a);
        }
        self.spec.target_addr(t)
    }
}

/// Runs one check once.
pub async fn check(c: &Check, ctx: &Context, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let r = tokio::time::timeout(timeout, run(c, ctx, deadline)).await;
    let latency = start.elapsed();
    match r {
        Ok(Ok(detail)) => Outcome {
            ok: true,
            latency,
            detail,
        },
        Ok(Err(detail)) => Outcome {
            ok: false,
            latency,
            detail,
        },
        Err(_) => Outcome {
            ok: false,
            latency,
            detail: format!("timed out after {timeout:?}"),
        },
    }
}

/// A connection to `addr` accepted by the judged instance.
async fn connect(
    ctx: &Context,
    addr: std::net::SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<TcpStream, String> {
    match &ctx.instance {
        Some(judged) => crate::attribute::connect(addr, judged, deadline).await,
        None => TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}")),
    }
}

async fn run(c: &Check, ctx: &Context, deadline: tokio::time::Instant) -> Result<String, String> {
    match c {
        Check::Notify {} => {
            let s = ctx.notify.borrow().clone();
            if s.ready {
                Ok("READY=1 received".into())
            } else {
                Err("no READY=1 yet".into())
            }
        }
        Check::Tcp { target } => {
            let addr = ctx.addr(target).ok_or("no such target")?;
            connect(ctx, addr, deadline).await?;
            Ok(format!("connected to {addr}"))
        }
        Check::Http {
            target,
            path,
            status_min,
            status_max,
            body,
        } => {
            let addr = ctx.addr(target).ok_or("no such target")?;
            let stream = connect(ctx, addr, deadline).await?;
            let (status, text) = http_get(stream, addr, path, "HTTP/1.1", 64 * 1024).await?;
            if status < *status_min || status > *status_max {
                return Err(format!("GET {path} answered {status}"));
            }
            if let Some(b) = body
                && !text.contains(b.as_str())
            {
                return Err(format!(
                    "GET {path} answered {status} without `{b}` in the body"
                ));
            }
            Ok(format!("GET {path} answered {status}"))
        }
        Check::Exec { command } => {
            let mut cmd = tokio::process::Command::new(&command[0]);
            // An exec check runs beside the instance: it is told which
            // instance it judges, and must look at that one.
            if let Some(judged) = &ctx.instance {
                cmd.env("CUTOVER_INSTANCE_PID", judged.main.to_string());
            }
            if let Some(user) = &ctx.spec.run.user {
                let (uid, gid) = crate::instance::lookup_user(user).map_err(|e| e.to_string())?;
                cmd.gid(gid).uid(uid);
            }
            let out = cmd
                .args(&command[1..])
                .current_dir(&ctx.release_dir)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("running {}: {e}", command[0]))?;
            if out.status.success() {
                Ok("exit 0".into())
            } else {
                let err: String = String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(200)
                    .collect();
                Err(format!("{}: {}", out.status, err.trim()))
            }
        }
        Check::Grpc { target, service } => {
            let addr = ctx.addr(target).ok_or("no such target")?;
            let stream = connect(ctx, addr, deadline).await?;
            // The channel runs on the connection the instance accepted,
            // and on no other.
            let once = std::sync::Mutex::new(Some(stream));
            let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                let s = once.lock().unwrap_or_else(|p| p.into_inner()).take();
                async move {
                    s.map(hyper_util::rt::TokioIo::new).ok_or_else(|| {
                        std::io::Error::other("the probe's connection was used already")
                    })
                }
            });
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_with_connector(connector)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let mut client = tonic_health::pb::health_client::HealthClient::new(ch);
            let r = client
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.clone(),
                })
                .await
                .map_err(|s| format!("health check: {}", s.message()))?
                .into_inner();
            if r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                Ok("SERVING".into())
            } else {
                Err(format!("status {}", r.status))
            }
        }
    }
}

/// GETs `path` of the judged instance (a connection it accepted) within
/// `timeout`: the status and the body, of at most `limit` bytes. HTTP/1.0,
/// so that the body comes whole, not in chunks.
pub async fn fetch(
    ctx: &Context,
    target: &cutover_common::service::Target,
    path: &str,
    timeout: Duration,
    limit: usize,
) -> Result<(u16, String), String> {
    let addr = ctx.addr(target).ok_or("no such target")?;
    let deadline = tokio::time::Instant::now() + timeout;
    let got = tokio::time::timeout_at(deadline, async {
        let stream = connect(ctx, addr, deadline).await?;
        http_get(stream, addr, path, "HTTP/1.0", limit).await
    })
    .await
    .map_err(|_| format!("GET {path}: timed out after {timeout:?}"))??;
    let (status, text) = got;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A minimal GET with `Connection: close`; returns the status and up to
/// `limit` bytes of the response.
async fn http_get(
    mut s: TcpStream,
    addr: std::net::SocketAddr,
    path: &str,
    version: &str,
    limit: usize,
) -> Result<(u16, String), String> {
    let req = format!(
        "GET {path} {version}\r\nHost: {addr}\r\nUser-Agent: cutover-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 || buf.len() > limit {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not an HTTP response".to_string())?;
    Ok((status, text))
}

/// A probe running on its schedule until dropped.
#[derive(Debug)]
pub struct Running {
    pub status: watch::Receiver<ProbeStatus>,
    pub probe: Probe,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a probe; with `after`, its first check waits until that
/// probe first passed (a liveness probe starts once the instance was
/// ready: a slow boot is not a hang).
pub fn start(probe: Probe, ctx: Context, after: Option<watch::Receiver<ProbeStatus>>) -> Running {
    let (tx, rx) = watch::channel(ProbeStatus::default());
    let p = probe.clone();
    let task = tokio::spawn(async move {
        if let Some(mut gate) = after
            && gate.wait_for(|s| s.first_pass.is_some()).await.is_err()
        {
            return;
        }
        tokio::time::sleep(p.initial_delay).await;
        let mut tick = tokio::time::interval(p.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A notify check looks only at what the app said: after the first
        // check it is re-checked the moment the app says something, and
        // never on a timer (an idle agent must not wake for nothing). If the
        // instance's notify socket goes away, the tick takes over.
        let mut said = ctx.notify.clone();
        let mut on_notify = matches!(p.check, cutover_common::service::Check::Notify {});
        let mut checked = false;
        loop {
            if !(on_notify && checked) {
                tick.tick().await;
            } else if said.changed().await.is_err() {
                on_notify = false;
            }
            checked = true;
            let o = check(&p.check, &ctx, p.timeout).await;
            let now = Instant::now();
            let verdict = |s: &ProbeStatus| (s.passing, s.failing(p.failure_threshold));
            let mut changed = false;
            tx.send_modify(|s| {
                let before = verdict(s);
                s.record(o, p.success_threshold, p.failure_threshold, now);
                changed = verdict(s) != before;
            });
            if changed {
                // Supervision acts on it (a liveness replacement) and
                // publishes it (the coordinator's rollback waits on it).
                ctx.wake.wake();
            }
        }
    });
    Running {
        status: rx,
        probe,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(ok: bool) -> Outcome {
        Outcome {
            ok,
            latency: Duration::from_millis(3),
            detail: String::new(),
        }
    }

    #[test]
    fn a_probe_passes_after_success_threshold_and_fails_after_failure_threshold() {
        let mut s = ProbeStatus::default();
        let t0 = Instant::now();
        s.record(o(true), 2, 3, t0);
        assert!(!s.passing, "one success of two needed");
        s.record(o(true), 2, 3, t0 + Duration::from_secs(1));
        assert!(s.passing);
        assert_eq!(s.first_pass, Some(t0 + Duration::from_secs(1)));
        s.record(o(false), 2, 3, t0);
        s.record(o(false), 2, 3, t0);
        assert!(s.passing, "two failures of three tolerated");
        s.record(o(false), 2, 3, t0);
        assert!(!s.passing);
        assert!(s.failing(3));
        assert_eq!(
            s.first_pass,
            Some(t0 + Duration::from_secs(1)),
            "first pass is kept"
        );
        assert_eq!((s.checks, s.failed_checks), (5, 3));
    }

    #[test]
    fn a_probe_that_never_passed_is_failing_after_the_threshold() {
        let mut s = ProbeStatus::default();
        for _ in 0..3 {
            s.record(o(false), 1, 3, Instant::now());
        }
        assert!(!s.passing && s.failing(3));
    }

    #[tokio::test]
    async fn an_http_check_reads_the_status_and_body() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown")
                    .await;
            }
        });
        let spec: ServiceSpec =
            toml::from_str("service = \"s\"\n[run]\ncommand = [\"x\"]\n").unwrap();
        let (_tx, notify) = watch::channel(NotifyState::default());
        let ctx = Context {
            spec,
            release_dir: PathBuf::from("/"),
            notify,
            bound: vec![],
            instance: None,
            wake: Default::default(),
        };
        let target = cutover_common::service::Target {
            listener: None,
            port: Some(port),
        };
        let c = Check::Http {
            target,
            path: "/healthz".into(),
            status_min: 200,
            status_max: 399,
            body: None,
        };
        let out = check(&c, &ctx, Duration::from_secs(2)).await;
        assert!(!out.ok);
        assert!(out.detail.contains("503"), "{}", out.detail);
    }

    #[tokio::test]
    async fn a_grpc_check_runs_on_the_connection_the_judged_instance_accepted() {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        let spec: ServiceSpec =
            toml::from_str("service = \"s\"\n[run]\ncommand = [\"x\"]\n").unwrap();
        let (_tx, notify) = watch::channel(NotifyState::default());
        let mut ctx = Context {
            spec,
            release_dir: PathBuf::from("/"),
            notify,
            bound: vec![],
            // This process serves: the instance judged.
            instance: Some(std::sync::Arc::new(crate::attribute::Judged::new(
                std::process::id(),
                None,
            ))),
            wake: Default::default(),
        };
        let c = Check::Grpc {
            target: cutover_common::service::Target {
                listener: None,
                port: Some(port),
            },
            service: String::new(),
        };
        let out = check(&c, &ctx, Duration::from_secs(5)).await;
        assert!(out.ok, "{}", out.detail);
        // Judged as another process, the server's answers do not count.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        ctx.instance = Some(std::sync::Arc::new(crate::attribute::Judged::new(
            other.id(),
            None,
        )));
        let out = check(&c, &ctx, Duration::from_millis(300)).await;
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(!out.ok);
        assert!(
            out.detail.contains("taken by other processes"),
            "{}",
            out.detail
        );
    }
}
