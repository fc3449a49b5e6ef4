//! A standby coordinator's server: until it leads, it answers every call
//! (agents' sessions, enrollment, operators') with UNAVAILABLE naming the
//! leader, in the `cutover-leader` header too, so that agents and the CLI
//! go there. Health checks are answered (NOT_SERVING for the services a
//! standby does not serve).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
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

/// Serves refusals on `listener` until this coordinator leads (its
/// term), or `stop`. Connections still open then are closed.
pub async fn serve_until_leader(
    listener: &TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: watch::Receiver<LeaseState>,
    me: String,
    lease: Duration,
    stop: CancellationToken,
) -> Option<u64> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let done = CancellationToken::new();
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    let refuse_state = state.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Refuse {
                inner,
                state: refuse_state.clone(),
                me: me.clone(),
                // Past a lease's end and the next campaign round.
                max_wait: lease * 2 + Duration::from_secs(1),
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
    drop(conn_tx);
    done.cancel();
    // Open connections (agents waiting to retry) are closed: a second at
    // most for answers in flight.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    term
}

/// A refusal for everything but health checks.
#[derive(Clone)]
struct Refuse<S> {
    inner: S,
    state: watch::Receiver<LeaseState>,
    me: String,
    max_wait: Duration,
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
        Box::pin(async move {
            if let Some(dead) = dead {
                // Held until the leader is another than the one the caller
                // could not reach (or none is elected for too long).
                let stale = |s: &LeaseState| match s {
                    LeaseState::Standby { leader: Some(l) } => l.address == dead,
                    LeaseState::Standby { leader: None } | LeaseState::Unknown => true,
                    LeaseState::Leader { .. } => false,
                };
                let _ = tokio::time::timeout(wait, async {
                    while stale(&state.borrow_and_update()) {
                        if state.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
            }
            let status = refusal(&state.borrow(), &me);
            Ok(status.into_http())
        })
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
