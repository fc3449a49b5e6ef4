//! A standby coordinator's server: until it leads, it answers every call
//! (agents' sessions, enrollment, operators') with UNAVAILABLE naming the
//! leader, in the `cutover-leader` header too, so that agents and the CLI
//! go there. Health checks are answered (NOT_SERVING for the services a
//! standby does not serve).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::leader::{LeaderInfo, LeaseState};

/// The header naming the leader's URL in a standby's refusal.
pub use cutover_common::wire::LEADER_HEADER;

/// The header a client sends naming a leader it could not reach (a
/// standby had named it): the standby then answers once another leads
/// (or after a while), instead of naming the dead one again. A fleet
/// reconnecting after a leader's death waits on one open call each rather
/// than going round the coordinators.
pub use cutover_common::wire::DEAD_LEADER_HEADER;

/// The refusal a standby answers with while `state` holds; `me` is its
/// own URL (named when it has just taken the lease).
pub fn refusal(state: &LeaseState, me: &str) -> tonic::Status {
    let leader = match state {
        LeaseState::Standby { leader } => leader.clone(),
        LeaseState::Leader { term, .. } => Some(LeaderInfo {
            name: "this coordinator".into(),
            address: me.to_string(),
            term: *term,
        }),
        LeaseState::Unknown => None,
    };
    match leader {
        Some(LeaderInfo {
            name,
            address,
            term,
        }) => {
            let mut s = tonic::Status::unavailable(format!(
                "this coordinator is a standby: the leader is {name} at {address} (term {term})"
            ));
            if let Ok(v) = address.parse() {
                s.metadata_mut().insert(LEADER_HEADER, v);
            }
            s
        }
        None => tonic::Status::unavailable(
            "this coordinator is a standby and no leader is elected at the moment: try again in a few seconds",
        ),
    }
}

/// A standby that has just won the lease: its server keeps answering
/// (and holding the calls of agents waiting for a new leader) until the
/// leader's own server accepts connections; [`Handover::serving`] then
/// sends the held calls here, spread out, and closes the standby server.
pub struct Handover {
    pub term: u64,
    serving: CancellationToken,
    done: CancellationToken,
    /// Kept open until [`Handover::serving`]: its end would start the
    /// standby server's shutdown (GOAWAY to every connection) early.
    conns: Option<tokio::sync::mpsc::Sender<io::Result<Conn>>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Handover {
    /// The leader accepts connections: the held calls are answered
    /// "the leader is this coordinator" and the standby server stops
    /// (in the background: answers in flight finish, then it is ended).
    pub fn serving(mut self) {
        self.serving.cancel();
        self.conns.take();
        self.done.cancel();
        if let Some(mut server) = self.server.take() {
            tokio::spawn(async move {
                // The held calls' spread and a margin; then whatever is
                // left (a health watch) is ended.
                let wait = RELEASE_SPREAD_MAX + Duration::from_secs(2);
                if tokio::time::timeout(wait, &mut server).await.is_err() {
                    server.abort();
                }
            });
        }
    }
}

impl Drop for Handover {
    /// Not served (the takeover failed): the standby server ends with it.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.done.cancel();
            server.abort();
        }
    }
}

/// Held calls are released over `held × RELEASE_SPREAD_PER_CALL` (10,000
/// agents: 1 s), at most this: a fleet reconnecting at once would overflow
/// the accept queue, and a dropped SYN costs a second, then three.
const RELEASE_SPREAD_MAX: Duration = Duration::from_secs(2);
const RELEASE_SPREAD_PER_CALL: Duration = Duration::from_micros(100);

/// Serves refusals on `listener` until this coordinator leads (its
/// term), or `stop`. The standby server goes on until
/// [`Handover::serving`]: the listener is the leader's from then on.
pub async fn serve_until_leader(
    listener: &TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: watch::Receiver<LeaseState>,
    me: String,
    lease: Duration,
    stop: CancellationToken,
) -> Option<Handover> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let done = CancellationToken::new();
    let serving = CancellationToken::new();
    let held = Arc::new(AtomicUsize::new(0));
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    let refuse_state = state.clone();
    let refuse_serving = serving.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Refuse {
                inner,
                state: refuse_state.clone(),
                me: me.clone(),
                // Past a lease's end and the next campaign round.
                max_wait: lease * 2 + Duration::from_secs(1),
                serving: refuse_serving.clone(),
                held: held.clone(),
            }))
            .add_service(health_svc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(conn_rx),
                done.clone().cancelled_owned(),
            ),
    );
    let acceptor = TlsAcceptor::from(tls);
    let mut leading = state.clone();
    let term = loop {
        tokio::select! {
            _ = stop.cancelled() => break None,
            r = leading.changed() => {
                if r.is_err() {
                    break None;
                }
                if let LeaseState::Leader { term, .. } = &*leading.borrow_and_update() {
                    break Some(*term);
                }
            }
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, tx) = (acceptor.clone(), conn_tx.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        let _ = tx.send(Ok(Conn(tls))).await;
                    }
                });
            }
        }
    };
    match term {
        Some(term) => Some(Handover {
            term,
            serving,
            done,
            conns: Some(conn_tx),
            server: Some(server),
        }),
        None => {
            drop(conn_tx);
            done.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
            None
        }
    }
}

/// A refusal for everything but health checks.
#[derive(Clone)]
struct Refuse<S> {
    inner: S,
    state: watch::Receiver<LeaseState>,
    me: String,
    max_wait: Duration,
    /// Fired once this coordinator, leading, accepts connections.
    serving: CancellationToken,
    /// Calls held now (the release is spread over their number).
    held: Arc<AtomicUsize>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Refuse<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            let f = self.inner.call(req);
            return Box::pin(f);
        }
        let dead = req
            .headers()
            .get(DEAD_LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (mut state, me, wait) = (self.state.clone(), self.me.clone(), self.max_wait);
        let (serving, held) = (self.serving.clone(), self.held.clone());
        Box::pin(async move {
            let _held = Held::new(&held);
            let waited = tokio::time::timeout(wait, async {
                // A caller naming a dead leader waits until another leads.
                if let Some(dead) = &dead {
                    let stale = |s: &LeaseState| match s {
                        LeaseState::Standby { leader: Some(l) } => l.address == *dead,
                        LeaseState::Standby { leader: None } | LeaseState::Unknown => true,
                        LeaseState::Leader { .. } => false,
                    };
                    while stale(&state.borrow_and_update()) {
                        if state.changed().await.is_err() {
                            return false;
                        }
                    }
                }
                // Leading but not accepting yet: sent here only once it is.
                if matches!(&*state.borrow(), LeaseState::Leader { .. }) {
                    serving.cancelled().await;
                    return true;
                }
                false
            })
            .await;
            if waited == Ok(true) {
                // Spread: the fleet arrives over a second, not in one burst.
                let spread = (RELEASE_SPREAD_PER_CALL * held.load(Ordering::Relaxed) as u32)
                    .min(RELEASE_SPREAD_MAX);
                if !spread.is_zero() {
                    let pause = rand::random_range(Duration::ZERO..spread);
                    tokio::time::sleep(pause).await;
                }
            }
            let status = refusal(&state.borrow(), &me);
            Ok(status.into_http())
        })
    }
}

/// Counts a call while it is held.
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Held(count.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TLS connection to the standby server.
struct Conn(TlsStream<TcpStream>);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
