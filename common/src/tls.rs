//! rustls configuration for every Cutover connection, and the tonic
//! connector that dials the coordinator with it.
//!
//! - The coordinator's server config asks every client for a certificate
//!   from the cluster CA. A client may omit it (a new host enrolling), in
//!   which case only the enrollment and health services answer; a client
//!   that presents a certificate from another CA, or an expired one, fails
//!   the handshake.
//! - Clients trust only the cluster CA and check the fixed server name
//!   [`COORDINATOR_SERVER_NAME`] whatever address they dialled.
//! - Enrollment has no CA file yet: it pins the CA by fingerprint
//!   ([`PinnedCaVerifier`]) and keeps the CA certificate it saw.
//!
//! TLS 1.3 only, ring provider, ALPN `h2`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ProducesTickets, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::identity::COORDINATOR_SERVER_NAME;
use crate::pki::{TlsIdentity, fingerprint};

/// What went wrong building a TLS config or connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration rejected")]
    Config(#[from] rustls::Error),
    #[error("client certificate verifier could not be built")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("`{url}` is not a coordinator URL (expected https://HOST:PORT)")]
    BadUrl { url: String },
    #[error("cannot collect session tickets from the coordinator at {url}")]
    Collect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the coordinator at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl TlsError {
    /// Whether trying again later may succeed (the network, not the config).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TlsError::Connect { .. } | TlsError::Collect { .. })
    }
}

/// Whether a call's status means it ended in transit (connection lost,
/// cancelled, timed out, server going away) rather than by the peer's
/// decision: worth trying again, and not to be reported as a refusal.
///
/// A status the peer sent is decoded from its trailers and has no source.
/// One tonic made here from a failed transport (a connection reset or
/// closed mid-call) carries that error, often as `Unknown` with the message
/// "transport error": under load at 10,000 enrolments such a reset was
/// reported as the coordinator refusing (BENCHMARKS.md, ninth round).
pub fn status_is_interrupted(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    ) || std::error::Error::source(s).is_some()
}

/// A status's message with the errors beneath it, for logs: "transport
/// error: connection error: Connection reset by peer" rather than the bare
/// "transport error" of its message.
pub fn status_detail(s: &tonic::Status) -> String {
    crate::join_chain(std::iter::once(s.message().to_string()).chain(crate::source_messages(s)))
}

/// The crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in ca {
        store.add(c.clone())?;
    }
    Ok(Arc::new(store))
}

/// The coordinator's server config: its certificate chain, and client
/// certificates from `ca` verified when presented.
/// With `tickets`, clients get TLS 1.3 session tickets sealed by it and
/// may resume with them (no certificates or signatures, a fresh key
/// exchange); without, none: every handshake is a full one.
pub fn server_config(
    identity: &TlsIdentity,
    ca: &[CertificateDer<'static>],
    tickets: Option<Arc<dyn ProducesTickets>>,
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .allow_unauthenticated()
        .build()?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    match tickets {
        Some(t) => cfg.ticketer = t,
        None => {
            // rustls would otherwise resume from sessions kept in memory.
            cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            cfg.send_tls13_tickets = 0;
        }
    }
    Ok(cfg)
}

/// A client config trusting only `ca`, presenting `identity` if given.
pub fn client_config(
    ca: &[CertificateDer<'static>],
    identity: Option<&TlsIdentity>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?);
    let mut cfg = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// The TLS 1.3 session tickets a client keeps between its connections to
/// the coordinator, so that after a coordinator restart it resumes rather
/// than making a full handshake.
///
/// rustls resumes a session only with the very config (verifier and
/// client credentials, compared by pointer) that made it, and a resumed
/// session carries the certificate of the handshake that issued its
/// ticket. So this keeps the whole config for one set of credentials: the
/// same while the CA and certificate files are unchanged, a new one (with
/// no tickets) once a certificate is renewed, which the next connection
/// then shows.
///
/// A ticket is usable only for the coordinator's ticket lifetime, and
/// rustls 0.23 sends tickets only at the end of a handshake, never on a
/// connection that stays open. A host whose session outlives its tickets,
/// or that renewed its certificate since, therefore collects fresh ones
/// with [`collect_tickets`].
#[derive(Default)]
pub struct SessionTickets {
    current: Mutex<Option<Current>>,
}

struct Current {
    key: [u8; 32],
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for SessionTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTickets").finish_non_exhaustive()
    }
}

/// [`client_config`] presenting `identity`, kept in `tickets` with the
/// session tickets it holds while `ca` and `identity` are unchanged.
pub fn resuming_client_config(
    ca: &[CertificateDer<'static>],
    identity: &TlsIdentity,
    tickets: &SessionTickets,
) -> Result<Arc<ClientConfig>, TlsError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in ca.iter().chain(&identity.chain) {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c.as_ref());
    }
    h.update(identity.key.secret_der());
    let key: [u8; 32] = h.finalize().into();
    let mut cur = tickets.current.lock().expect("not poisoned");
    if let Some(c) = &*cur
        && c.key == key
    {
        return Ok(c.config.clone());
    }
    let mut cfg = client_config(ca, Some(identity))?;
    // One server name; the coordinator sends two tickets a handshake, and
    // each is used once.
    cfg.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(8)));
    let config = Arc::new(cfg);
    *cur = Some(Current {
        key,
        config: config.clone(),
    });
    Ok(config)
}

/// When a client holding tickets from a coordinator whose tickets live
/// `lifetime` should next collect fresh ones: at 40 to 60 % of it (`spread`
/// from 0 to 1 picks the point), so a ticket in hand is never older than
/// 60 % of its lifetime, and a fleet that connected at once (after a
/// restart) does not come back at once. `None` when it issues none.
pub fn ticket_refresh_after(lifetime: Duration, spread: f64) -> Option<Duration> {
    (!lifetime.is_zero()).then(|| lifetime.mul_f64(0.4 + 0.2 * spread.clamp(0.0, 1.0)))
}

/// How long a client waits before its `failures`-th collection in a row
/// (from 1) is tried again, for tickets that live `lifetime`: from
/// `lifetime / 20` (5 s to 5 min) doubling each time, at most `lifetime / 5`,
/// scaled by 0.75 to 1.25 with `spread` (0 to 1). A coordinator that
/// cannot issue tickets (or is full) is not asked again by a whole fleet
/// in lockstep, and a ticket in hand (at most 60 % of its lifetime old
/// when the first try fails) still gets several tries before it runs out.
pub fn ticket_retry_after(lifetime: Duration, failures: u32, spread: f64) -> Duration {
    let base = (lifetime / 20).clamp(Duration::from_secs(5), Duration::from_secs(300));
    let doubled = base.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled
        .min((lifetime / 5).max(base))
        .mul_f64(0.75 + 0.5 * spread.clamp(0.0, 1.0))
}

/// Opens one connection to the coordinator at `url` with `config` only to
/// collect fresh session tickets into it, then closes it: the number
/// received. Pass the config [`resuming_client_config`] returns, so that
/// the tickets land where the next connection looks for them. The
/// coordinator sends them right after the handshake, before any of its own
/// data (hyper's HTTP/2 settings), so this waits for the first tickets,
/// that data or the connection's end, within `opts`' handshake timeout.
pub async fn collect_tickets(
    url: &str,
    config: Arc<ClientConfig>,
    opts: ChannelOptions,
) -> Result<u32, TlsError> {
    let (host, port) = host_port(url)?;
    let io = |e: std::io::Error| TlsError::Collect {
        url: url.into(),
        source: e,
    };
    let tcp = dial_tcp(&host, port, opts).await.map_err(io)?;
    collect_over(tcp, config, opts.handshake_timeout)
        .await
        .map_err(io)
}

async fn collect_over<S>(
    stream: S,
    config: Arc<ClientConfig>,
    limit: Duration,
) -> std::io::Result<u32>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use std::task::Poll;
    use tokio::io::{AsyncRead, AsyncWriteExt};
    let name = ServerName::try_from(COORDINATOR_SERVER_NAME).expect("valid DNS name");
    let mut tls = tokio::time::timeout(
        limit,
        tokio_rustls::TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| timed_out("TLS handshake", limit))??;
    let received = |t: &tokio_rustls::client::TlsStream<S>| t.get_ref().1.tls13_tickets_received();
    // Tickets are handshake messages: rustls takes them in while it reads
    // (all that has arrived), before the first byte of data comes out.
    // Done at the first tickets, the first data or the end.
    let mut buf = [0u8; 64];
    let read = std::future::poll_fn(|cx| {
        let mut rb = tokio::io::ReadBuf::new(&mut buf);
        match std::pin::Pin::new(&mut tls).poll_read(cx, &mut rb) {
            Poll::Pending if received(&tls) == 0 => Poll::Pending,
            Poll::Pending => Poll::Ready(Ok(())),
            ready => ready,
        }
    });
    let read = tokio::time::timeout(limit, read).await;
    let got = received(&tls);
    if got == 0 {
        read.map_err(|_| timed_out("session tickets", limit))??;
    }
    // A courtesy close_notify; the tickets are in hand either way.
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
    Ok(got)
}

/// Verifies the coordinator during enrollment, when the host has no CA file
/// yet: the chain the server sends must contain a certificate whose SHA-256
/// fingerprint is the pinned one, and the server certificate must verify
/// against it as a root. The CA certificate seen is kept for the caller.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
    seen_ca: Mutex<Option<CertificateDer<'static>>>,
    refused: Mutex<Option<String>>,
}

impl PinnedCaVerifier {
    /// `fingerprint` as returned by [`crate::pki::parse_fingerprint`].
    pub fn new(fingerprint: String) -> Arc<Self> {
        Arc::new(Self {
            fingerprint,
            provider: provider(),
            seen_ca: Mutex::new(None),
            refused: Mutex::new(None),
        })
    }

    /// Why the coordinator's certificate was refused, if a handshake
    /// failed on it: trying that coordinator again cannot help.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("poisoned").clone()
    }

    /// The CA certificate that matched the pin, once a handshake succeeded.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.seen_ca.lock().expect("poisoned").clone()
    }

    fn algs(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the coordinator's CA does not match the pinned fingerprint {}",
                    self.fingerprint
                ))
            })?
            .clone()
            .into_owned();
        let roots =
            roots(std::slice::from_ref(&ca)).map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified =
            inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        *self.seen_ca.lock().expect("poisoned") = Some(ca);
        Ok(verified)
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.verify(end_entity, intermediates, server_name, ocsp_response, now);
        if let Err(e) = &verified {
            *self.refused.lock().expect("poisoned") = Some(e.to_string());
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algs())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algs())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs().supported_schemes()
    }
}

/// A client config for enrollment: no client certificate, CA pinned.
pub fn enroll_client_config(verifier: Arc<PinnedCaVerifier>) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Timeouts for a client channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    /// For the TCP connection: a coordinator that is down or unreachable
    /// shows here.
    pub connect_timeout: Duration,
    /// For the TLS handshake after it. Longer: a coordinator restarted
    /// under a whole fleet takes every host's handshake in turn, and a
    /// host that gave up after a few seconds and dialled again made it do
    /// its work twice (a quarter of 10,000 reconnects, BENCHMARKS.md).
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// The local address to dial from (a host with several); the
    /// system's choice when unset.
    pub source: Option<std::net::IpAddr>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            source: None,
        }
    }
}

/// Dials the coordinator at `url` (`https://host:port`) with `tls`,
/// verifying the server as [`COORDINATOR_SERVER_NAME`].
pub async fn connect(
    url: &str,
    tls: impl Into<Arc<ClientConfig>>,
    opts: ChannelOptions,
) -> Result<Channel, TlsError> {
    let uri = coordinator_uri(url)?;
    // The connector below times its two steps itself.
    let endpoint = Endpoint::from(uri)
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(tls.into());
    let name = ServerName::try_from(COORDINATOR_SERVER_NAME).expect("valid DNS name");
    let svc = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        let name = name.clone();
        async move {
            let (host, port) = uri_host_port(&uri);
            let tcp = dial_tcp(&host, port, opts).await?;
            let tls = tokio::time::timeout(opts.handshake_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| timed_out("TLS handshake", opts.handshake_timeout))??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(svc)
        .await
        .map_err(|source| TlsError::Connect {
            url: url.into(),
            source,
        })
}

fn coordinator_uri(url: &str) -> Result<Uri, TlsError> {
    let bad = || TlsError::BadUrl { url: url.into() };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

fn uri_host_port(uri: &Uri) -> (String, u16) {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    (host, uri.port_u16().unwrap_or(443))
}

fn host_port(url: &str) -> Result<(String, u16), TlsError> {
    Ok(uri_host_port(&coordinator_uri(url)?))
}

fn timed_out(what: &str, limit: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no {what} within {limit:?}"),
    )
}

/// The TCP connection to the coordinator, within `opts.connect_timeout`.
async fn dial_tcp(host: &str, port: u16, opts: ChannelOptions) -> std::io::Result<TcpStream> {
    let dial = async {
        let Some(source) = opts.source else {
            return TcpStream::connect((host, port)).await;
        };
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            let sock = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if addr.is_ipv4() != source.is_ipv4() {
                continue;
            }
            sock.bind(std::net::SocketAddr::new(source, 0))?;
            match sock.connect(addr).await {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("no address of {host} in the family of {source}"),
            )
        }))
    };
    let tcp = tokio::time::timeout(opts.connect_timeout, dial)
        .await
        .map_err(|_| timed_out("TCP connection", opts.connect_timeout))??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A human hint for a failed connection's error chain: what the TLS alert
/// most likely means for the person reading it.
pub fn explain(chain: &str) -> Option<&'static str> {
    let c = chain.to_ascii_lowercase();
    if c.contains("certificateexpired") || c.contains("expired") {
        Some(
            "the certificate has expired: renew it (`cutover ca issue-operator` for operators, re-enroll for hosts)",
        )
    } else if c.contains("unknownca") || c.contains("unknown issuer") || c.contains("unknownissuer")
    {
        Some("the certificate was not issued by this cluster's CA")
    } else if c.contains("does not match the pinned fingerprint") {
        Some(
            "the --ca-fingerprint does not match this coordinator's CA: check it with `cutover ca fingerprint` on the coordinator",
        )
    } else if c.contains("connection refused") {
        Some("nothing is listening there: is `cutover serve` running, and is the address right?")
    } else if c.contains("notvalidforname") || c.contains("not valid for name") {
        Some("the server's certificate is not a Cutover coordinator certificate")
    } else if c.contains("invalidcontenttype") || c.contains("corrupt message") {
        Some(
            "that port does not speak TLS (a metrics or readiness port, or another server): the coordinator's port is `listen` in coordinator.toml, also written to its state directory's listen.addr",
        )
    } else {
        None
    }
}

/// Checks locally that a client certificate chains to `ca` and is valid
/// now, the way the coordinator will check it, so a bad certificate is
/// reported plainly before connecting (in TLS 1.3 the server's refusal
/// arrives after the client believes the handshake is done).
pub fn check_client_cert(
    ca: &[CertificateDer<'static>],
    identity: &TlsIdentity,
) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        roots(ca).map_err(|e| rustls::Error::General(e.to_string()))?,
        provider(),
    )
    .build()
    .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier
        .verify_client_cert(&identity.chain[0], &identity.chain[1..], UnixTime::now())
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pki::{Ca, Issue, Usage};
    use std::path::Path;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn issue(ca: &Ca, who: Identity, usage: Usage, names: &[&str]) -> TlsIdentity {
        let mut req = Issue::new(who, usage, Duration::from_secs(3600));
        req.names = names.iter().map(|n| n.to_string()).collect();
        let (cert, key) = ca.issue(&req).unwrap();
        let pem = format!("{cert}{}", key.serialize_pem());
        TlsIdentity::from_pem(pem.as_bytes(), Path::new("test")).unwrap()
    }

    /// One handshake over an in-memory pipe: whether it resumed, and the
    /// client certificate the server saw.
    async fn handshake(
        server: &Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (bool, CertificateDer<'static>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server.clone());
        let srv = tokio::spawn(async move {
            let mut s = acceptor.accept(b).await.unwrap();
            // Sends the tickets with the first reply.
            s.write_all(b"ok").await.unwrap();
            s.flush().await.unwrap();
            let conn = s.get_ref().1;
            let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let cert = conn.peer_certificates().unwrap()[0].clone();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            (resumed, cert)
        });
        let name = ServerName::try_from(COORDINATOR_SERVER_NAME).unwrap();
        let mut c = TlsConnector::from(client).connect(name, a).await.unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        srv.await.unwrap()
    }

    #[tokio::test]
    async fn a_client_resumes_with_its_ticket_until_its_certificate_is_renewed() {
        let ca = Ca::generate("test").unwrap();
        let roots = [ca.cert_der().clone()];
        let server_id = issue(
            &ca,
            Identity::Coordinator,
            Usage::Server,
            &[COORDINATOR_SERVER_NAME],
        );
        let ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let server = Arc::new(server_config(&server_id, &roots, Some(ticketer)).unwrap());
        let host = issue(&ca, Identity::Host("web-1".into()), Usage::Client, &[]);
        let tickets = SessionTickets::default();
        // The config is built again each time from the same files, as the
        // agent does each attempt: whether it resumed, and which
        // certificate the server saw.
        let connect_as = async |id: &TlsIdentity| {
            let cfg = resuming_client_config(&roots, id, &tickets).unwrap();
            let (resumed, seen) = handshake(&server, cfg).await;
            (resumed, seen == id.chain[0])
        };
        assert_eq!(connect_as(&host).await, (false, true));
        assert_eq!(connect_as(&host).await, (true, true));
        // Renewed: a full handshake, and the server sees the new
        // certificate, not the one the old tickets carry.
        let renewed = issue(&ca, Identity::Host("web-1".into()), Usage::Client, &[]);
        assert_eq!(connect_as(&renewed).await, (false, true));
        assert_eq!(connect_as(&renewed).await, (true, true));

        // Without a ticketer, no resumption, even from the same server.
        let plain = Arc::new(server_config(&server_id, &roots, None).unwrap());
        let cfg = resuming_client_config(&roots, &renewed, &tickets).unwrap();
        assert!(!handshake(&plain, cfg.clone()).await.0);
        assert!(!handshake(&plain, cfg).await.0);
    }

    /// A server that answers each connection as the coordinator does:
    /// handshake (tickets), then its own first bytes, then waits.
    fn spawn_server(server: &Arc<ServerConfig>) -> tokio::io::DuplexStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = TlsAcceptor::from(server.clone());
        tokio::spawn(async move {
            let mut s = acceptor.accept(b).await.unwrap();
            s.write_all(b"settings").await.unwrap();
            s.flush().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        a
    }

    #[tokio::test]
    async fn a_renewed_client_collects_tickets_and_its_next_connection_resumes() {
        let ca = Ca::generate("test").unwrap();
        let roots = [ca.cert_der().clone()];
        let server_id = issue(
            &ca,
            Identity::Coordinator,
            Usage::Server,
            &[COORDINATOR_SERVER_NAME],
        );
        let ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let server = Arc::new(server_config(&server_id, &roots, Some(ticketer)).unwrap());
        let tickets = SessionTickets::default();
        let limit = Duration::from_secs(10);
        let host = issue(&ca, Identity::Host("web-1".into()), Usage::Client, &[]);
        let cfg = resuming_client_config(&roots, &host, &tickets).unwrap();
        assert_eq!(
            handshake(&server, cfg.clone()).await,
            (false, host.chain[0].clone())
        );
        // A renewal: the collection makes the full handshake with the new
        // certificate, so the next connection (after a restart, say)
        // resumes, and carries the new certificate.
        let renewed = issue(&ca, Identity::Host("web-1".into()), Usage::Client, &[]);
        let cfg = resuming_client_config(&roots, &renewed, &tickets).unwrap();
        let got = collect_over(spawn_server(&server), cfg.clone(), limit)
            .await
            .unwrap();
        assert_eq!(got, 2, "the server sends two tickets a handshake");
        let again = resuming_client_config(&roots, &renewed, &tickets).unwrap();
        assert!(Arc::ptr_eq(&cfg, &again));
        assert_eq!(
            handshake(&server, again).await,
            (true, renewed.chain[0].clone())
        );
        // A collection that resumes brings fresh tickets too.
        let got = collect_over(spawn_server(&server), cfg.clone(), limit)
            .await
            .unwrap();
        assert_eq!(got, 2);

        // A server that issues none: zero collected, without waiting for
        // the limit (its first bytes end the wait).
        let plain = Arc::new(server_config(&server_id, &roots, None).unwrap());
        let got = collect_over(spawn_server(&plain), cfg.clone(), limit)
            .await
            .unwrap();
        assert_eq!(got, 0);
        // One that never answers: the limit, named.
        let (silent, _keep) = tokio::io::duplex(1024);
        let e = collect_over(silent, cfg, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("no TLS handshake within"), "{e}");
    }

    #[test]
    fn tickets_are_collected_at_40_to_60_percent_of_their_lifetime() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(ticket_refresh_after(day, 0.0), Some(day.mul_f64(0.4)));
        assert_eq!(ticket_refresh_after(day, 0.5), Some(day / 2));
        assert_eq!(ticket_refresh_after(day, 1.0), Some(day.mul_f64(0.6)));
        assert_eq!(ticket_refresh_after(day, 7.0), Some(day.mul_f64(0.6)));
        assert_eq!(ticket_refresh_after(Duration::ZERO, 0.5), None);
    }

    #[test]
    fn a_failed_collection_is_tried_again_later_and_later_with_jitter() {
        let day = Duration::from_secs(86_400);
        let tries: Vec<u64> = (1..=8)
            .map(|n| ticket_retry_after(day, n, 0.5).as_secs())
            .collect();
        // 5 min doubling, at most a fifth of the lifetime (4.8 h).
        assert_eq!(tries, [300, 600, 1200, 2400, 4800, 9600, 17280, 17280]);
        assert_eq!(ticket_retry_after(day, 1, 0.0).as_secs(), 225);
        assert_eq!(ticket_retry_after(day, 1, 1.0).as_secs(), 375);
        // Short lifetimes: never under 5 s nor (but for that floor) over
        // a fifth of the lifetime.
        let minute = Duration::from_secs(60);
        assert_eq!(ticket_retry_after(minute, 1, 0.5), Duration::from_secs(5));
        assert_eq!(ticket_retry_after(minute, 30, 0.5), Duration::from_secs(12));
        assert_eq!(
            ticket_retry_after(minute, u32::MAX, 1.0),
            Duration::from_secs(15)
        );
    }
}
