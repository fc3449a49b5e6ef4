//! `cutover-agent enroll`: generate the host key here, pin the cluster CA by
//! fingerprint, trade a join token and a CSR for a host certificate, and
//! store the result.

use std::path::PathBuf;
use std::sync::Arc;

use cutover_common::identity::{self, Identity};
use cutover_common::pki::{self, PkiError};
use cutover_common::tls::{self, ChannelOptions, PinnedCaVerifier, TlsError};
use cutover_proto::v1 as pb;

use crate::identity::{Enrollment, IdentityFiles};

/// Enrollment failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "this host is already enrolled as `{host}` ({path}); remove that directory to enroll again"
    )]
    AlreadyEnrolled { host: String, path: PathBuf },
    #[error("host id: {0}")]
    HostId(#[from] identity::IdentityError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the coordinator refused enrollment: {0}")]
    Refused(String),
    /// The coordinator is turning enrollments away for now (too many at
    /// once, or too many refused from this address): worth trying again.
    #[error("the coordinator is busy: {0}")]
    Busy(String),
    #[error(
        "the enrollment call ended before the coordinator answered ({0}); nothing was recorded here: try again (if the coordinator then says the host is already enrolled, it kept this try's key: `cutover hosts remove HOST` there first)"
    )]
    Interrupted(String),
    #[error("the coordinator's answer is not acceptable: {0}")]
    BadAnswer(String),
}

impl EnrollError {
    /// Whether trying again later may succeed: the connection or the call
    /// failed (a coordinator restarting, or busy with thousands of hosts
    /// enrolling at once), not the token, the CA or the host's name.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnrollError::Tls(e) => e.is_retryable(),
            EnrollError::Interrupted(_) | EnrollError::Busy(_) => true,
            _ => false,
        }
    }

    /// The coordinator's answer to the call, or the transport's when there
    /// was none: only a decision of the coordinator is a refusal.
    fn from_status(s: tonic::Status) -> EnrollError {
        if tls::status_is_interrupted(&s) {
            EnrollError::Interrupted(tls::status_detail(&s))
        } else if s.code() == tonic::Code::ResourceExhausted {
            EnrollError::Busy(s.message().to_string())
        } else {
            EnrollError::Refused(s.message().to_string())
        }
    }
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    pub coordinator: String,
    pub token: String,
    pub ca_fingerprint: String,
    pub host_id: String,
}

/// How often [`enroll`] tries a connection that failed or a call cut
/// off, and the first pause between tries (doubling, with jitter).
pub const ENROLL_ATTEMPTS: u32 = 5;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Enrolls this host; returns what was recorded.
///
/// A connection that fails or a call cut off (a coordinator restarting,
/// or busy with a fleet enrolling at once) is tried again, up to
/// [`ENROLL_ATTEMPTS`] times over about 15 s, with the same key: if the
/// coordinator did admit the host and only its answer was lost, it
/// recognises the key and answers again without using the token again.
pub async fn enroll(
    files: &IdentityFiles,
    req: EnrollRequest,
    opts: ChannelOptions,
) -> Result<Enrollment, EnrollError> {
    if let Ok(existing) = files.enrollment_record() {
        return Err(EnrollError::AlreadyEnrolled {
            host: existing.host_id,
            path: files.dir.clone(),
        });
    }
    identity::check_name(&req.host_id)?;
    let fingerprint = pki::parse_fingerprint(&req.ca_fingerprint)?;
    let key = pki::generate_key()?;
    let csr = pki::make_csr(&key)?;
    let verifier = PinnedCaVerifier::new(fingerprint.clone());
    let cfg = Arc::new(tls::enroll_client_config(verifier.clone())?);
    let call = pb::EnrollRequest {
        token: req.token.trim().to_string(),
        csr_der: csr,
        host_id: req.host_id.clone(),
        agent_version: cutover_common::VERSION.into(),
    };
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    let resp = loop {
        match ask(&req.coordinator, &cfg, &call, opts).await {
            Ok(r) => break r,
            // A coordinator whose certificate the pin refused is the
            // wrong one (or an impostor): asking it again cannot help.
            Err(e)
                if e.is_retryable()
                    && verifier.refused().is_none()
                    && attempt < ENROLL_ATTEMPTS =>
            {
                let wait = pause.mul_f64(0.75 + rand::random::<f64>() / 2.0);
                tracing::warn!(
                    error = %cutover_common::error_chain(&e), attempt, of = ENROLL_ATTEMPTS, wait = ?wait,
                    "enrollment did not get through; trying again with the same key"
                );
                tokio::time::sleep(wait).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };

    // Trust nothing in the answer that the handshake did not establish.
    let ca_seen = verifier.ca().ok_or_else(|| {
        EnrollError::BadAnswer("no pinned CA was seen during the handshake".into())
    })?;
    let ca_der = pki::cert_der_from_pem(&resp.ca_certificate_pem, "enrollment answer")?;
    if ca_der.as_ref() != ca_seen.as_ref() {
        return Err(EnrollError::BadAnswer(
            "the CA in the answer is not the pinned CA".into(),
        ));
    }
    let cert_der = pki::cert_der_from_pem(&resp.certificate_pem, "enrollment answer")?;
    let info = identity::cert_info(&cert_der).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if info.identity != Identity::Host(req.host_id.clone()) {
        return Err(EnrollError::BadAnswer(format!(
            "certificate is for {} instead of host:{}",
            info.identity, req.host_id
        )));
    }
    if !pki::cert_matches_key(&cert_der, &key) {
        return Err(EnrollError::BadAnswer(
            "certificate does not match the key generated here".into(),
        ));
    }
    let record = Enrollment {
        host_id: req.host_id,
        coordinator: req.coordinator,
        ca_fingerprint: fingerprint,
        labels: resp.labels.into_iter().collect(),
        enrolled_at_ms: cutover_common::time::now_ms(),
    };
    files.save(
        &resp.certificate_pem,
        &key,
        &resp.ca_certificate_pem,
        &record,
    )?;
    Ok(record)
}

/// One enrollment call: to each of `urls` (comma-separated: several
/// coordinators sharing a store) in turn until one answers; a standby's
/// answer naming the leader is followed there.
async fn ask(
    urls: &str,
    cfg: &Arc<rustls::ClientConfig>,
    call: &pb::EnrollRequest,
    opts: ChannelOptions,
) -> Result<pb::EnrollResponse, EnrollError> {
    let mut last = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match ask_one(url, cfg, call, opts).await {
            Err(Asked::Standby(Some(leader))) => {
                return ask_one(&leader, cfg, call, opts)
                    .await
                    .map_err(Asked::into_error);
            }
            Err(e) => last = Some(e.into_error()),
            Ok(r) => return Ok(r),
        }
    }
    Err(last.unwrap_or_else(|| EnrollError::Refused("no coordinator URL given".into())))
}

/// What one coordinator answered, when not an enrollment.
enum Asked {
    /// A standby (several coordinators): the leader's URL, if it named it.
    Standby(Option<String>),
    Failed(EnrollError),
}

impl Asked {
    fn into_error(self) -> EnrollError {
        match self {
            Asked::Standby(_) => EnrollError::Interrupted(
                "a standby coordinator answered and no leader is elected yet".into(),
            ),
            Asked::Failed(e) => e,
        }
    }
}

/// One enrollment call on a new connection.
async fn ask_one(
    url: &str,
    cfg: &Arc<rustls::ClientConfig>,
    call: &pb::EnrollRequest,
    opts: ChannelOptions,
) -> Result<pb::EnrollResponse, Asked> {
    let channel = tls::connect(url, cfg.clone(), opts)
        .await
        .map_err(|e| Asked::Failed(e.into()))?;
    let mut client = pb::enroll_service_client::EnrollServiceClient::new(channel);
    match client.enroll(call.clone()).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) => Err(match crate::session::standby_leader(&s) {
            Some(leader) => Asked::Standby(leader),
            None => Asked::Failed(EnrollError::from_status(s)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like tonic's transport error: a bare message over its cause.
    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Transport(#[source] std::io::Error);

    #[test]
    fn a_call_cut_off_is_worth_retrying_and_a_refusal_is_not() {
        let cut = EnrollError::from_status(tonic::Status::cancelled("operation was canceled"));
        assert!(cut.is_retryable());
        assert!(cut.to_string().contains("try again"), "{cut}");
        let gone = EnrollError::from_status(tonic::Status::unavailable("transport error"));
        assert!(gone.is_retryable());
        // What tonic makes of a connection reset mid-call: `Unknown`, with
        // the transport's error beneath a bare "transport error".
        let reset = EnrollError::from_status(tonic::Status::from_error(Box::new(Transport(
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ),
        ))));
        assert!(reset.is_retryable(), "{reset:?}");
        assert_eq!(
            reset.to_string(),
            "the enrollment call ended before the coordinator answered (transport error: \
             connection reset by peer); nothing was recorded here: try again (if the coordinator \
             then says the host is already enrolled, it kept this try's key: `cutover hosts \
             remove HOST` there first)"
        );
        let refused = EnrollError::from_status(tonic::Status::permission_denied(
            "the join token has no uses left",
        ));
        assert!(!refused.is_retryable());
        assert_eq!(
            refused.to_string(),
            "the coordinator refused enrollment: the join token has no uses left"
        );
        // Turned away for now (a fleet enrolling at once): tried again.
        let busy = EnrollError::from_status(tonic::Status::resource_exhausted(
            "too many enrollments at once across the fleet: try again in 1s",
        ));
        assert!(busy.is_retryable(), "{busy}");
    }
}
