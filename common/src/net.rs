//! Listening sockets.

use std::net::SocketAddr;

/// A TCP listener on `addr` with `SO_REUSEADDR` (a restarted process binds
/// again at once) and an accept queue of `backlog` (the kernel caps it at
/// `net.core.somaxconn`). Needs a tokio runtime.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long an accept loop waits after an error before accepting again.
/// Out of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`)
/// the listener stays readable and accepting again at once only spins; a
/// pause lets connections close. Other errors concern one connection
/// (`ECONNABORTED`) and need none.
pub fn accept_backoff(e: &io::Error) -> Duration {
    match e.raw_os_error() {
        Some(libc_like::EMFILE | libc_like::ENFILE | libc_like::ENOBUFS | libc_like::ENOMEM) => {
            Duration::from_millis(200)
        }
        _ => Duration::ZERO,
    }
}

/// The errno values [`accept_backoff`] knows (Linux).
mod libc_like {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}

/// A connection that ends itself: a read fails once it has been idle
/// (nothing read) for `idle`, or open for `lifetime`. For connections
/// anyone can open, so that nobody holds one for ever; `None` for either
/// means no such limit.
pub struct Expiring<T> {
    inner: T,
    idle_for: Option<Duration>,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    lifetime: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Expiring<T> {
    /// Needs a tokio runtime with time.
    pub fn new(inner: T, idle: Option<Duration>, lifetime: Option<Duration>) -> Self {
        Self {
            inner,
            idle_for: idle,
            idle: idle.map(|d| Box::pin(tokio::time::sleep(d))),
            lifetime: lifetime.map(|d| Box::pin(tokio::time::sleep(d))),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(l) = self.lifetime.as_mut()
            && l.as_mut().poll(cx).is_ready()
        {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection open longer than allowed",
            ));
        }
        if let Some(i) = self.idle.as_mut()
            && i.as_mut().poll(cx).is_ready()
        {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle longer than allowed",
            ));
        }
        None
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Expiring<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Some(idle), Some(d), Poll::Ready(Ok(()))) = (this.idle.as_mut(), this.idle_for, &r)
            && buf.filled().len() > before
        {
            idle.as_mut().reset(tokio::time::Instant::now() + d);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Expiring<T> {
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

/// Bounds of a plain-HTTP endpoint anyone on the network can reach (the
/// agent's readiness endpoint, the coordinator's metrics).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle: Duration,
    /// No connection stays open longer.
    pub lifetime: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            idle: Duration::from_secs(10),
            lifetime: Duration::from_secs(120),
        }
    }
}

/// A plain-text answer of a plain-HTTP endpoint.
pub type PlainResponse = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// Serves HTTP/1.1 on `listener` until `shutdown`, answering each request
/// with `answer` (given the peer's address), within `limits`: a cap on connections (those beyond it
/// are closed at once, so the descriptors they would hold stay free), an
/// idle and a total time per connection, and a pause after an accept
/// error that would repeat at once (see [`accept_backoff`]).
pub async fn serve_http<F, Fut>(
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: tokio_util::sync::CancellationToken,
    what: &'static str,
    answer: F,
) where
    F: Fn(std::net::SocketAddr, hyper::Request<hyper::body::Incoming>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = PlainResponse> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut refused_at_cap: u64 = 0;
    loop {
        // Cancel-safe: accept loses nothing when dropped.
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    let pause = accept_backoff(&e);
                    if !pause.is_zero() {
                        tracing::warn!(endpoint = what, error = %e, ?pause, "cannot accept connections; pausing");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused_at_cap += 1;
            if refused_at_cap.is_power_of_two() {
                tracing::warn!(
                    endpoint = what,
                    max = limits.max_connections,
                    refused = refused_at_cap,
                    "connection limit reached; closing new connections"
                );
            }
            drop(tcp);
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let io = Expiring::new(tcp, Some(limits.idle), Some(limits.lifetime));
            let svc = hyper::service::service_fn(move |req| {
                let fut = answer(peer, req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_running_out_of_resources_pauses_accepting() {
        assert!(!accept_backoff(&io::Error::from_raw_os_error(24)).is_zero());
        assert!(!accept_backoff(&io::Error::from_raw_os_error(23)).is_zero());
        assert!(accept_backoff(&io::Error::from_raw_os_error(103)).is_zero());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_a_busy_one_at_its_lifetime() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut e = Expiring::new(
            a,
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(25)),
        );
        let mut buf = [0u8; 8];
        // Data keeps it open past the idle time...
        for _ in 0..4 {
            b.write_all(b"x").await.unwrap();
            tokio::time::advance(Duration::from_secs(6)).await;
            assert_eq!(e.read(&mut buf).await.unwrap(), 1);
        }
        // ...but not past its lifetime.
        let err = e.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("longer than allowed"));
        // Idle: closed after `idle`.
        let (a, _b) = tokio::io::duplex(64);
        let mut e = Expiring::new(a, Some(Duration::from_secs(10)), None);
        let started = tokio::time::Instant::now();
        assert!(e.read(&mut buf).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
