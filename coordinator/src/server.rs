//! `cutover serve`: the coordinator daemon. [`Server::start`] binds, serves
//! and returns a [`Running`] handle, so tests and `cutover demo` start the
//! very same thing on port 0.
//!
//! TLS is terminated here rather than inside tonic so that each
//! connection's verified identity is parsed once at the handshake and
//! attached to every request ([`PeerInfo`]), and so that refused
//! certificates are logged and audited with the peer's address.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cutover_common::identity;
use cutover_common::net::Expiring;
use cutover_common::time::now_ms;
use cutover_proto::v1 as pb;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::app::App;
use crate::config::CoordinatorConfig;
use crate::fleet::Fleet;
use crate::grpc::agent::AgentSvc;
use crate::grpc::auth::PeerInfo;
use crate::grpc::control::ControlSvc;
use crate::grpc::enroll::EnrollSvc;
use crate::pki_setup::{self, SetupError};
use crate::store::{self, Audit, Outcome};
use crate::tickets::Ticketer;

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("cannot start the thread that accepts connections")]
    AcceptThread(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tickets(#[from] crate::tickets::TicketError),
    #[error(transparent)]
    Tls(#[from] cutover_common::tls::TlsError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("gRPC server failed")]
    Grpc(#[from] tonic::transport::Error),
    #[error("building the reflection service: {0}")]
    Reflection(String),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error(
        "another coordinator runs on state directory {dir} ({holder}): stop it first, or give this one a state_dir of its own"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("locking the state directory {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The state directory, held by one coordinator for as long as it runs
/// (an exclusive `flock` on `coordinator.lock`, released by the kernel
/// when the process ends, however it ends): a second coordinator on the
/// same store is refused instead of writing beside the first.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir`, or says who holds it.
    pub fn take(dir: &std::path::Path) -> Result<StateLock, ServeError> {
        use std::io::{Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("coordinator.lock");
        let err = |source| ServeError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(ServeError::Locked {
                    dir: dir.to_path_buf(),
                    holder: match holder.trim() {
                        "" => "pid unknown".into(),
                        h => h.to_string(),
                    },
                });
            }
            Err(e) => return Err(err(e.into())),
        }
        // Who holds it, for the next one's message.
        file.set_len(0).map_err(err)?;
        file.rewind().map_err(err)?;
        writeln!(file, "pid {}", std::process::id()).map_err(err)?;
        Ok(StateLock { _file: file })
    }
}

/// The coordinator daemon.
#[derive(Debug)]
pub struct Server;

/// A started coordinator.
#[derive(Debug)]
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The URL agents and operators should use.
    pub url: String,
    pub app: Arc<App>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Held for as long as this coordinator runs.
    _lock: StateLock,
    /// The leader lease, renewed for as long as this coordinator runs
    /// (PostgreSQL store).
    _lease: Option<crate::leader::Lease>,
}

impl Running {
    /// Stops accepting, closes sessions and waits for the server to end.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        match self.server.await {
            Ok(r) => Ok(r?),
            Err(_) => Ok(()),
        }
    }

    /// Waits until the server ends by itself (it only does on error) or
    /// `signal` completes, then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        tokio::select! {
            r = &mut self.server => {
                self.shutdown.cancel();
                return match r { Ok(r) => Ok(r?), Err(_) => Ok(()) };
            }
            _ = signal => {}
        }
        self.shutdown().await
    }
}

/// A TLS connection with what its handshake established.
struct PeerStream {
    inner: Expiring<TlsStream<TcpStream>>,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
    /// Only for connections without a certificate.
    _anonymous: Option<Anonymous>,
}

/// What a connection without a certificate holds while it is open.
/// Anyone can open one, so none may sit on its slot: its stream is an
/// [`Expiring`] one (closed when idle, and at the end of its lifetime;
/// enrolling takes one call of well under a second).
struct Anonymous {
    _slot: OwnedSemaphorePermit,
    _source: crate::guard::SourceSlot,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A handshake failure worth an audit line: a certificate was presented
/// and refused (expired, other CA, wrong usage).
fn certificate_refusal(e: &io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(c) => Some(format!("client certificate refused: {c:?}")),
        rustls::Error::NoCertificatesPresented => Some("no client certificate presented".into()),
        _ => None,
    }
}

impl Server {
    /// Loads the CA and store, binds `cfg.listen`, and starts serving.
    pub async fn start(cfg: CoordinatorConfig) -> Result<Running, ServeError> {
        // Before anything is written (the store's migrations, addresses).
        pki_setup::ensure_state_dir(&cfg)?;
        let lock = StateLock::take(&cfg.state_dir)?;
        let store = pki_setup::open_store(&cfg)?;
        let ca = pki_setup::load_ca(&cfg)?;
        let server_id = pki_setup::server_identity(&cfg, &ca)?;
        let tickets = if cfg.session_ticket_lifetime.is_zero() {
            None
        } else {
            Some(Arc::new(Ticketer::open(
                &cfg.pki_dir().join(crate::tickets::TICKET_KEYS),
                cfg.session_ticket_lifetime,
                &ca.fingerprint(),
            )?))
        };
        let tls = cutover_common::tls::server_config(
            &server_id,
            std::slice::from_ref(ca.cert_der()),
            tickets
                .clone()
                .map(|t| t as Arc<dyn rustls::server::ProducesTickets>),
        )?;
        // A deep accept queue: after a coordinator restart the whole fleet
        // reconnects at once.
        let listener =
            cutover_common::net::listen(cfg.listen, 8192).map_err(|source| ServeError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let url = cfg.advertised_url(local_addr);
        let addr_file = cfg.state_dir.join("listen.addr");
        cutover_common::fsutil::write_atomic(
            &addr_file,
            format!("{local_addr}\n").as_bytes(),
            0o644,
        )
        .map_err(|source| ServeError::Write {
            path: addr_file.clone(),
            source,
        })?;
        // Several coordinators on one PostgreSQL store: this one serves
        // only refusals naming the leader until it leads.
        let mut standby = None;
        let (leadership, lease) = match cfg.store_location()? {
            store::Location::Sqlite(_) => (None, None),
            store::Location::Postgres(target) => {
                let member = crate::leader::Member::new(&cfg.member_name(), &url);
                let lease = crate::leader::Lease::start(target, member.clone(), cfg.leader_lease)
                    .map_err(ServeError::AcceptThread)?;
                tracing::info!(name = %member.name, %url, "standing by until this coordinator leads");
                let _ = cutover_common::sdnotify::notify(&format!(
                    "READY=1\nSTATUS=standby at {url}: waiting to lead"
                ));
                // Its own few metrics until it leads (that it stands by,
                // its version, the leader's term), on the leader's port.
                let standby_metrics = match cfg.metrics_listen {
                    Some(addr) => {
                        let (l, bound) = bind_metrics(&cfg, addr).await?;
                        tracing::info!(%bound, "metrics at http://{bound}/metrics (a standby's)");
                        let stop = CancellationToken::new();
                        let (m, state) = (
                            Arc::new(crate::metrics::StandbyMetrics::default()),
                            lease.watch(),
                        );
                        let task = tokio::spawn(crate::metrics::serve_rendered(
                            l,
                            stop.clone(),
                            move || {
                                let term = match &*state.borrow() {
                                    crate::leader::LeaseState::Standby { leader: Some(l) } => {
                                        l.term
                                    }
                                    crate::leader::LeaseState::Leader { term, .. } => *term,
                                    _ => 0,
                                };
                                let m = m.clone();
                                async move { m.render(term) }
                            },
                        ));
                        Some((stop, task))
                    }
                    None => None,
                };
                let handover = crate::standby::serve_until_leader(
                    &listener,
                    Arc::new(tls.clone()),
                    lease.watch(),
                    url.clone(),
                    cfg.leader_lease,
                    CancellationToken::new(),
                )
                .await
                .ok_or_else(|| store::StoreError::Batch("the leader lease stopped".into()))?;
                let term = handover.term;
                // Its port is the leader's metrics' from now on.
                if let Some((stop, task)) = standby_metrics {
                    stop.cancel();
                    let _ = task.await;
                }
                // Every write from now on checks the term in its transaction.
                store.fence(term);
                tracing::info!(term, "this coordinator leads; taking over");
                standby = Some((handover, std::time::Instant::now()));
                (
                    Some(crate::app::Leadership {
                        term,
                        member,
                        lease: cfg.leader_lease,
                    }),
                    Some(lease),
                )
            }
        };
        let (ca_der, server_der) = (
            ca.cert_der().to_vec(),
            server_id
                .chain
                .first()
                .map(|c| c.to_vec())
                .unwrap_or_default(),
        );
        // Read once leading: a standby's view would be stale.
        let hosts = store.with(|c| store::list_hosts(c))?;
        let host_count = hosts.len();
        let app = Arc::new(App {
            fleet: Fleet::new(hosts, cfg.host_timeout),
            store,
            ca,
            url: url.clone(),
            cfg,
            commands: Default::default(),
            rollouts: Default::default(),
            metrics: Default::default(),
            guard: Arc::new(crate::guard::Guard::new(Default::default())),
            notifier: Default::default(),
            leadership,
            started_ms: now_ms(),
            logs: Default::default(),
        });
        let mut held_lease = None;
        if let (Some(lease), Some(l)) = (lease, &app.leadership) {
            // Steps down (exits) when the lease is lost or runs out.
            tokio::spawn(crate::leader::watch_leadership(lease.watch(), l.term));
            app.metrics.leading(l.term);
            held_lease = Some(lease);
        }
        app.metrics.certificates(&ca_der, &server_der);
        let _ = app.notifier.set(crate::notify::Notifier::start(&app)?);
        match app.store.call(|c| store::deployed_services(c)).await {
            Ok(known) => {
                for (service, environment, strategy) in known {
                    app.metrics.known(&service, &environment, &strategy);
                }
            }
            Err(e) => {
                tracing::warn!(error = %cutover_common::error_chain(&e), "reading the deployed services for the metrics failed")
            }
        }
        match crate::rollout::resume_all(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rollouts = n, "resumed unfinished rollouts"),
            Err(e) => {
                tracing::error!(error = %cutover_common::error_chain(&e), "loading unfinished rollouts failed")
            }
        }
        let shutdown = CancellationToken::new();
        let (conn_tx, conn_rx) = mpsc::channel::<io::Result<PeerStream>>(128);
        let accept = spawn_acceptor(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            app.clone(),
            conn_tx,
            shutdown.clone(),
        )
        .map_err(ServeError::AcceptThread)?;
        let reaper = tokio::spawn(reap_loop(app.clone(), shutdown.clone()));
        if let Some(t) = tickets {
            tokio::spawn(roll_ticket_keys(t, shutdown.clone()));
        }
        if let Some(addr) = app.cfg.metrics_listen {
            let (l, bound) = bind_metrics(&app.cfg, addr).await?;
            tracing::info!(%bound, "metrics at http://{bound}/metrics");
            tokio::spawn(crate::metrics::serve(app.clone(), l, shutdown.clone()));
        }

        let (health, health_svc) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::agent_service_server::AgentServiceServer<AgentSvc>>()
            .await;
        health
            .set_serving::<pb::control_service_server::ControlServiceServer<ControlSvc>>()
            .await;
        health
            .set_serving::<pb::enroll_service_server::EnrollServiceServer<EnrollSvc>>()
            .await;

        let limits = app.cfg.limits.clone();
        let max = limits.max_message_bytes;
        let agent = pb::agent_service_server::AgentServiceServer::new(AgentSvc {
            app: app.clone(),
            shutdown: shutdown.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        let control =
            pb::control_service_server::ControlServiceServer::new(ControlSvc { app: app.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max);
        let enroll =
            pb::enroll_service_server::EnrollServiceServer::new(EnrollSvc { app: app.clone() })
                .max_decoding_message_size(64 * 1024)
                .max_encoding_message_size(64 * 1024);
        // Reflection (`grpcurl list`, `describe`) for operators: the schema
        // is public (proto/), but anonymous clients reach only enrollment
        // and health.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cutover_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServeError::Reflection(e.to_string()))?;
        let reflection = tonic::service::interceptor::InterceptedService::new(
            reflection,
            |req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
                match crate::grpc::auth::peer(&req).identity {
                    Some(cutover_common::identity::Identity::Operator(_)) => Ok(req),
                    _ => Err(tonic::Status::unauthenticated(
                        "reflection needs an operator certificate",
                    )),
                }
            },
        );
        let stop = shutdown.clone();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .max_concurrent_streams(Some(limits.max_concurrent_streams))
                .http2_keepalive_interval(Some(limits.keepalive_interval))
                .http2_keepalive_timeout(Some(limits.keepalive_timeout))
                .add_service(health_svc)
                .add_service(agent)
                .add_service(control)
                .add_service(enroll)
                .add_service(reflection)
                .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                    stop.cancelled().await
                }),
        );
        tracing::info!(listen = %local_addr, url = %url, hosts = host_count, "coordinator listening");
        if let Some((handover, since)) = standby {
            // The agents the standby server held come now, spread out.
            handover.serving();
            tracing::info!(took = ?since.elapsed(), "leading: the takeover is done");
        }
        Ok(Running {
            local_addr,
            url,
            app,
            shutdown,
            tasks: vec![accept, reaper],
            server,
            _lock: lock,
            _lease: held_lease,
        })
    }
}

/// Binds `metrics_listen` and writes the address bound to
/// `state_dir/metrics.addr`.
async fn bind_metrics(
    cfg: &CoordinatorConfig,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let l = crate::metrics::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = l
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let file = cfg.state_dir.join("metrics.addr");
    cutover_common::fsutil::write_atomic(&file, format!("{bound}\n").as_bytes(), 0o644).map_err(
        |source| ServeError::Write {
            path: file.clone(),
            source,
        },
    )?;
    Ok((l, bound))
}

/// Connections without a client certificate (hosts enrolling) open at
/// once: a pool of their own, so anonymous clients cannot take every slot.
const ANONYMOUS_CONNECTIONS: usize = 64;

/// Runs [`accept_loop`] on a thread of its own (a one-thread runtime), and
/// the TLS handshakes on the main runtime. When the whole fleet reconnects
/// at once (after a coordinator restart), the main runtime's workers are
/// busy with thousands of handshakes and sessions, and an accept loop
/// among them was polled too rarely: the kernel's accept queue overflowed
/// and dropped connections, which clients only retry after 1, 3, 7 s
/// (bench/fleet-scale.sh counted 6,180 drops for 10k agents). Accepting
/// is cheap; on its own thread it keeps the queue empty, and connections
/// wait their handshake in the process instead.
fn spawn_acceptor(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    conns: mpsc::Sender<io::Result<PeerStream>>,
    shutdown: CancellationToken,
) -> io::Result<JoinHandle<()>> {
    let listener = listener.into_std()?;
    let main = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            // Built (and dropped) on this thread, outside any runtime; the
            // caller learns whether it could start.
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    let l = rt.block_on(async { TcpListener::from_std(listener) })?;
                    Ok((rt, l))
                });
            match started {
                Ok((rt, l)) => {
                    let _ = ready_tx.send(Ok(()));
                    rt.block_on(accept_loop(l, acceptor, app, conns, shutdown, main));
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            let _ = done_tx.send(());
        })?;
    // Waits for the thread's first step only (building a runtime).
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("the accept thread ended before it started"))??;
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    conns: mpsc::Sender<io::Result<PeerStream>>,
    shutdown: CancellationToken,
    main: tokio::runtime::Handle,
) {
    let limit = Arc::new(Semaphore::new(app.cfg.limits.max_connections));
    let anonymous = Arc::new(Semaphore::new(ANONYMOUS_CONNECTIONS));
    let anonymous_queue = Arc::new(Semaphore::new(ANONYMOUS_CONNECTIONS));
    let handshake_timeout = app.cfg.limits.handshake_timeout;
    loop {
        // Cancel-safe: acquiring a permit or accepting loses nothing when dropped.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = conns.closed() => return,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = conns.closed() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    let pause = cutover_common::net::accept_backoff(&e);
                    if !pause.is_zero() {
                        tracing::warn!(error = %e, ?pause, "cannot accept connections; pausing");
                        tokio::time::sleep(pause).await;
                    }
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // Handed to the main runtime: deregistered here, registered there.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "accepted connection unusable");
                continue;
            }
        };
        let (acceptor, app, conns, anonymous, anonymous_queue) = (
            acceptor.clone(),
            app.clone(),
            conns.clone(),
            anonymous.clone(),
            anonymous_queue.clone(),
        );
        main.spawn(async move {
            let tcp = match tokio::net::TcpStream::from_std(tcp) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "accepted connection unusable");
                    return;
                }
            };
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    if let Some(detail) = certificate_refusal(&e) {
                        tracing::warn!(peer = %addr, reason = %detail, "tls handshake refused");
                        app.audit(Audit {
                            actor: format!("anonymous@{}", addr.ip()),
                            action: "tls.handshake",
                            target: String::new(),
                            outcome: Outcome::Denied,
                            detail,
                        })
                        .await;
                    } else {
                        tracing::debug!(peer = %addr, error = %e, "tls handshake failed");
                    }
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "tls handshake timed out");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            app.metrics.tls_handshake(resumed);
            let cert = session.peer_certificates().and_then(|c| c.first()).cloned();
            let (identity, not_after, serial) = match cert.map(|c| identity::cert_info(&c)) {
                Some(Ok(info)) => (Some(info.identity), Some(info.not_after), info.serial),
                Some(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "client certificate has no usable identity");
                    return;
                }
                None => (None, None, String::new()),
            };
            // A full handshake checked the certificate's dates; a resumed
            // one carries the certificate of the handshake that issued its
            // ticket, which may have expired since.
            if not_after.is_some_and(|t| t <= SystemTime::now()) {
                tracing::warn!(peer = %addr, "resumed session with an expired client certificate; closing");
                return;
            }
            let anonymous = if identity.is_none() {
                let limits = app.guard.anonymous;
                let Some(source) = app.guard.anonymous_connection(addr.ip()) else {
                    tracing::debug!(peer = %addr, per_source = limits.connections_per_source, "too many connections without a certificate from this address; closing");
                    return;
                };
                let Some(slot) = anonymous_slot(&anonymous, &anonymous_queue, handshake_timeout).await else {
                    tracing::warn!(peer = %addr, wait = ?handshake_timeout, "no free slot for a connection without a certificate (all taken, or too many waiting); closing");
                    return;
                };
                Some(Anonymous {
                    _slot: slot,
                    _source: source,
                })
            } else {
                None
            };
            let info = PeerInfo {
                addr: Some(addr),
                identity,
                cert_not_after: not_after,
                cert_serial: serial,
            };
            let inner = match &anonymous {
                Some(_) => {
                    let limits = app.guard.anonymous;
                    Expiring::new(tls, Some(limits.idle_timeout), Some(limits.connection_lifetime))
                }
                None => Expiring::new(tls, None, None),
            };
            let _ = conns
                .send(Ok(PeerStream {
                    inner,
                    info,
                    _permit: permit,
                    _anonymous: anonymous,
                }))
                .await;
        });
    }
}

/// A slot in `pool` for a connection without a certificate. When the pool
/// is full (a fleet enrolling at once), it waits up to `wait`, rather than
/// closing: a connection closed unanswered reads as a bare "transport
/// error" to the enrolling host. As many may wait (`queue`) as may be
/// served; beyond that, and after `wait`, none.
async fn anonymous_slot(
    pool: &Arc<Semaphore>,
    queue: &Arc<Semaphore>,
    wait: Duration,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = pool.clone().try_acquire_owned() {
        return Some(p);
    }
    let _place = queue.clone().try_acquire_owned().ok()?;
    if queue.available_permits() == ANONYMOUS_CONNECTIONS - 1 {
        tracing::info!(
            slots = ANONYMOUS_CONNECTIONS, wait = ?wait,
            "every slot for connections without a certificate is in use (hosts enrolling); new ones wait"
        );
    }
    tokio::time::timeout(wait, pool.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Rolls the session-ticket keys when due (checked every minute).
async fn roll_ticket_keys(tickets: Arc<Ticketer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = tickets.clone();
        match tokio::task::spawn_blocking(move || t.roll_if_due()).await {
            Ok(Ok(true)) => tracing::info!("session-ticket keys rolled"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %cutover_common::error_chain(&e), "rolling the session-ticket keys failed; no new tickets are issued until it succeeds (tried every minute)")
            }
            Err(e) => tracing::error!(error = %e, "rolling the session-ticket keys panicked"),
        }
    }
}

/// How often hosts' stored `last_seen` catches up with their heartbeats,
/// in one batch: what `cutover hosts` shows for a host not back after a
/// coordinator restart, and a lost host's "since".
pub const LAST_SEEN_STORE_EVERY: Duration = Duration::from_secs(60);

/// How often the retention policy is applied.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Applies `[retention]` once.
pub async fn prune_store(app: &App) {
    let r = app.cfg.retention.clone();
    let now = now_ms();
    let before = |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let (details, deployments, commands, audit) = (
        before(r.rollout_details),
        before(r.deployments),
        before(r.commands),
        before(r.audit),
    );
    match app
        .store
        .call(move |c| store::prune(c, details, r.keep_latest, deployments, commands, audit))
        .await
    {
        Ok(p) if p == store::Pruned::default() => {}
        Ok(p) => tracing::info!(
            rollout_details = p.details,
            deployments = p.deployments,
            commands = p.commands,
            audit_lines = p.audit,
            "pruned the store ([retention])"
        ),
        Err(e) => {
            tracing::error!(error = %cutover_common::error_chain(&e), "pruning the store failed; tried again in an hour")
        }
    }
}

async fn reap_loop(app: Arc<App>, shutdown: CancellationToken) {
    let period =
        (app.cfg.host_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    let mut seen = tokio::time::interval(LAST_SEEN_STORE_EVERY);
    seen.tick().await;
    // The first tick is at once: retention applies from the start.
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    // Stored up to here (a restart loaded the stored values).
    let mut seen_stored_ms = now_ms();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = prune.tick() => {
                prune_store(&app).await;
                continue;
            }
            _ = seen.tick() => {
                app.flush_audit_summaries().await;
                let now = now_ms();
                let writes: Vec<store::BatchedWrite> = app
                    .fleet
                    .seen_since(seen_stored_ms)
                    .into_iter()
                    .map(|(host, at_ms)| store::BatchedWrite::Seen { host, at_ms })
                    .collect();
                match app.store.write_all(writes).await {
                    Ok(()) => seen_stored_ms = now,
                    Err(e) => tracing::error!(error = %cutover_common::error_chain(&e), "storing when hosts were last seen failed"),
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let lost: Vec<store::BatchedWrite> = app
            .fleet
            .reap(now_ms())
            .into_iter()
            .map(|rec| {
                tracing::warn!(host = %rec.id, timeout = ?app.cfg.host_timeout, "host lost: no heartbeat");
                store::BatchedWrite::Host(rec)
            })
            .collect();
        if let Err(e) = app.store.write_all(lost).await {
            tracing::error!(error = %cutover_common::error_chain(&e), "persisting lost hosts failed");
        }
    }
}
