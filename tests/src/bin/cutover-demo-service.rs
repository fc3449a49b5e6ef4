//! The demo service: a small HTTP server that follows Cutover's app
//! contract, with switches for every way an app can go wrong.
//!
//! - takes its listeners from systemd socket activation (`LISTEN_FDS`,
//!   `LISTEN_PID`, `LISTEN_FDNAMES`), or binds `--listen` itself (optionally
//!   with `SO_REUSEPORT`);
//! - sends `READY=1` to `NOTIFY_SOCKET` once it serves;
//! - on SIGTERM stops accepting, answers further requests on open
//!   connections with `Connection: close`, and exits when they are done
//!   (or after `--drain-timeout-ms`);
//! - `GET /` answers `version=V`, with header `x-version`; `GET /healthz`
//!   answers 200 when healthy.
//!
//! Failure switches: `--crash-on-start`, `--never-ready`, `--error-ratio`,
//! `--latency-ms`, `--ignore-sigterm`, `--unhealthy-after-ms`, `--stop-delay-ms`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "cutover-demo-service")]
struct Args {
    /// Version this build reports.
    #[arg(long = "app-version", default_value = "1")]
    version: String,
    /// Addresses to bind when not socket-activated.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// An extra address this instance alone listens on (for probes aimed
    /// at one instance rather than at the shared socket).
    #[arg(long)]
    instance_listen: Option<SocketAddr>,
    /// Bind with SO_REUSEPORT (for `mode = "reuseport"`).
    #[arg(long)]
    reuseport: bool,
    /// Fraction of `GET /` answered with 500.
    #[arg(long, default_value_t = 0.0)]
    error_ratio: f64,
    /// Added latency per request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Exit with status 3 shortly after starting.
    #[arg(long)]
    crash_on_start: bool,
    /// Never send READY=1 and answer /healthz with 503.
    #[arg(long)]
    never_ready: bool,
    /// Delay before serving and READY=1.
    #[arg(long, default_value_t = 0)]
    ready_delay_ms: u64,
    /// Keep running on SIGTERM (until SIGKILL).
    #[arg(long)]
    ignore_sigterm: bool,
    /// /healthz turns 503 this long after start (a hung app, for liveness).
    #[arg(long)]
    unhealthy_after_ms: Option<u64>,
    /// Keep serving normally this long after SIGTERM before draining (an
    /// app finishing work).
    #[arg(long, default_value_t = 0)]
    stop_delay_ms: u64,
    /// Misbehave on SIGTERM: call shutdown() on the inherited listening
    /// sockets (which breaks them for every process sharing them).
    #[arg(long)]
    shutdown_listener: bool,
    /// Longest time to wait for open connections after SIGTERM.
    #[arg(long, default_value_t = 10_000)]
    drain_timeout_ms: u64,
}

struct State {
    version: String,
    error_ratio: f64,
    latency: Duration,
    healthy: AtomicBool,
    draining: AtomicBool,
    started: Instant,
    unhealthy_after: Option<Duration>,
    open: AtomicUsize,
    /// Whether the first failing `/healthz` was logged.
    failed_health: AtomicBool,
}

/// Listeners passed by socket activation, if they are meant for us.
fn activated() -> Vec<std::net::TcpListener> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !pid_ok || n <= 0 {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let fd = 3 + i;
            // SAFETY: socket activation hands us fds 3..3+LISTEN_FDS, open and
            // owned by this process (LISTEN_PID is ours); nothing else owns them.
            #[allow(unsafe_code)]
            let owned =
                unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            std::net::TcpListener::from(owned)
        })
        .collect()
}

fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if reuseport {
        sock.set_reuseport(true)?;
    }
    sock.bind(addr)?;
    let l = sock.listen(1024)?;
    l.into_std()
}

fn notify(msg: &str) {
    if let Ok(path) = std::env::var("NOTIFY_SOCKET") {
        let sock = std::os::unix::net::UnixDatagram::unbound();
        if let Ok(s) = sock {
            let _ = s.send_to(msg.as_bytes(), path);
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let healthy = state.healthy.load(Ordering::Relaxed)
        && state
            .unhealthy_after
            .is_none_or(|d| state.started.elapsed() < d);
    let (status, body) = match req.uri().path() {
        "/healthz" if healthy => (StatusCode::OK, "ok\n".to_string()),
        "/healthz" => {
            if !state.failed_health.swap(true, Ordering::Relaxed) {
                // For the rollback-time benchmark: when the first failing
                // health check was answered (wall clock, ms since the epoch).
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                eprintln!(
                    "demo-service {}: first failing /healthz at unix_ms={ms}",
                    state.version
                );
            }
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n".to_string())
        }
        _ if state.error_ratio > 0.0 && rand::random::<f64>() < state.error_ratio => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("version={} error\n", state.version),
        ),
        _ => (
            StatusCode::OK,
            format!("version={} pid={}\n", state.version, std::process::id()),
        ),
    };
    let mut resp = Response::builder()
        .status(status)
        .header("x-version", &state.version)
        .header("content-type", "text/plain");
    if state.draining.load(Ordering::Relaxed) {
        resp = resp.header("connection", "close");
    }
    Ok(resp
        .body(Full::new(Bytes::from(body)))
        .expect("valid response"))
}

/// After the stop signal, a keep-alive connection idle this long is
/// closed.
const IDLE_CLOSE: Duration = Duration::from_millis(250);

async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => {
                let Ok((tcp, _)) = r else { continue };
                let _ = tcp.set_nodelay(true);
                let st = state.clone();
                st.open.fetch_add(1, Ordering::SeqCst);
                let mut stopping = stop.clone();
                tokio::spawn(async move {
                    // Requests in flight on this connection, and when the
                    // last one ended.
                    let busy = Arc::new((AtomicUsize::new(0), std::sync::Mutex::new(Instant::now())));
                    let svc = service_fn({
                        let (st, busy) = (st.clone(), busy.clone());
                        move |req| {
                            let (st, busy) = (st.clone(), busy.clone());
                            async move {
                                busy.0.fetch_add(1, Ordering::SeqCst);
                                let r = handle(st, req).await;
                                *busy.1.lock().unwrap() = Instant::now();
                                busy.0.fetch_sub(1, Ordering::SeqCst);
                                r
                            }
                        }
                    });
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(tcp), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        // On the stop signal, as the app contract asks: a
                        // connection in use gets `connection: close` on its
                        // next answer (see `handle`); one left idle (a load
                        // balancer's pooled connection) is closed once it
                        // has been idle for IDLE_CLOSE. Closing a busy
                        // client's connection between two of its requests
                        // would fail the request it is sending.
                        _ = async {
                            let _ = stopping.wait_for(|s| *s).await;
                            loop {
                                let idle = busy.0.load(Ordering::SeqCst) == 0
                                    && busy.1.lock().unwrap().elapsed() >= IDLE_CLOSE;
                                if idle {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(25)).await;
                            }
                        } => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
    // Dropping the listener closes only this process's copy of the socket.
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if args.crash_on_start {
        tokio::time::sleep(Duration::from_millis(50)).await;
        eprintln!("demo-service {}: crashing on start as asked", args.version);
        std::process::exit(3);
    }
    let mut listeners = activated();
    if listeners.is_empty() {
        for a in &args.listen {
            listeners.push(bind(*a, args.reuseport).expect("binding --listen"));
        }
    }
    if listeners.is_empty() {
        eprintln!("demo-service: no listeners (neither LISTEN_FDS nor --listen)");
        std::process::exit(2);
    }
    if let Some(a) = args.instance_listen {
        listeners.push(bind(a, false).expect("binding --instance-listen"));
    }
    let state = Arc::new(State {
        version: args.version.clone(),
        error_ratio: args.error_ratio,
        latency: Duration::from_millis(args.latency_ms),
        healthy: AtomicBool::new(!args.never_ready),
        draining: AtomicBool::new(false),
        started: Instant::now(),
        unhealthy_after: args.unhealthy_after_ms.map(Duration::from_millis),
        open: AtomicUsize::new(0),
        failed_health: AtomicBool::new(false),
    });
    tokio::time::sleep(Duration::from_millis(args.ready_delay_ms)).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let raw: Vec<std::os::fd::OwnedFd> = if args.shutdown_listener {
        listeners
            .iter()
            .filter_map(|l| l.try_clone().ok().map(std::os::fd::OwnedFd::from))
            .collect()
    } else {
        Vec::new()
    };
    let mut acceptors = Vec::new();
    for l in listeners {
        l.set_nonblocking(true).expect("nonblocking");
        let l = TcpListener::from_std(l).expect("tokio listener");
        acceptors.push(tokio::spawn(serve(l, state.clone(), stop_rx.clone())));
    }
    if !args.never_ready {
        notify("READY=1");
    }
    eprintln!(
        "demo-service {} serving (pid {})",
        args.version,
        std::process::id()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        term.recv().await;
        if args.ignore_sigterm {
            eprintln!("demo-service {}: ignoring SIGTERM as asked", args.version);
            continue;
        }
        break;
    }
    notify("STOPPING=1");
    for fd in &raw {
        let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Read);
    }
    tokio::time::sleep(Duration::from_millis(args.stop_delay_ms)).await;
    state.draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // Every acceptor has stopped before the open connections are counted: a
    // connection accepted on another thread a moment ago is counted by now
    // (else it could be cut when the process exits).
    for a in acceptors {
        let _ = a.await;
    }
    let deadline = Instant::now() + Duration::from_millis(args.drain_timeout_ms);
    while state.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "demo-service {}: drained, {} connection(s) left",
        args.version,
        state.open.load(Ordering::SeqCst)
    );
}
