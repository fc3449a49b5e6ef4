//! `EnrollService`: a new host trades a join token and a CSR for its first
//! certificate. The only service (with health) that answers a client
//! without a certificate.

use std::sync::Arc;

use cutover_common::identity::check_name;
use cutover_common::time::now_ms;
use cutover_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::app::{App, JoinToken, ms};
use crate::grpc::auth::peer;
use crate::store::{self, Audit, HostFacts, HostRecord, Outcome};

/// The enrollment service.
#[derive(Debug, Clone)]
pub struct EnrollSvc {
    pub app: Arc<App>,
}

/// An agent version as hosts report it: short, printable, no spaces.
pub fn check_agent_version(v: &str) -> Result<(), String> {
    let ok = v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | '~'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a version: expected up to 64 of a-z, A-Z, 0-9 and . - + _ ~",
            cutover_common::truncate_for_display(v, 40)
        ))
    }
}

#[tonic::async_trait]
impl pb::enroll_service_server::EnrollService for EnrollSvc {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let peer = peer(&req);
        let source = peer.addr.map(|a| a.ip());
        let app = &self.app;
        let actor = peer.actor();
        let deny = |detail: String, target: String| {
            let actor = actor.clone();
            async move {
                app.guard.enroll_refused(source);
                app.audit(Audit {
                    actor,
                    action: "host.enroll",
                    target,
                    outcome: Outcome::Denied,
                    detail: detail.clone(),
                })
                .await;
                detail
            }
        };
        // Before anything is read, logged or stored: a source that keeps
        // being refused, or a flood from everywhere, is turned away here.
        if let Err(t) = app.guard.enroll_call(source) {
            app.audit(Audit {
                actor: actor.clone(),
                action: "host.enroll",
                target: String::new(),
                outcome: Outcome::Denied,
                detail: t.to_string(),
            })
            .await;
            return Err(Status::resource_exhausted(t.to_string()));
        }
        let r = req.into_inner();
        // Every field is checked before it is used as an audit target or
        // stored; a bad one is named, cut short, in the refusal.
        if let Err(e) = check_name(&r.host_id) {
            let msg = deny(format!("host id: {e}"), String::new()).await;
            return Err(Status::invalid_argument(msg));
        }
        if let Err(e) = check_agent_version(&r.agent_version) {
            let msg = deny(format!("agent version: {e}"), r.host_id.clone()).await;
            return Err(Status::invalid_argument(msg));
        }
        let Some(token) = JoinToken::parse(&r.token) else {
            let msg = deny(
                "malformed join token: expected cutover1.<id>.<secret>".into(),
                r.host_id.clone(),
            )
            .await;
            return Err(Status::invalid_argument(msg));
        };
        // The token before the certificate: nothing is signed for a
        // caller who holds no valid token.
        let (tid, hash) = (token.id.clone(), token.secret_hash());
        let checked = app
            .store
            .call(move |c| store::check_token(c, &tid, &hash, now_ms()))
            .await
            .map_err(|e| Status::internal(format!("store: {e}")))?;
        if let Err(refusal) = checked {
            let msg = deny(refusal.to_string(), r.host_id.clone()).await;
            return Err(Status::permission_denied(msg));
        }
        let (cert_pem, info) = match app.sign_host_csr(&r.host_id, &r.csr_der) {
            Ok(v) => v,
            Err(e) => {
                let msg = deny(e.to_string(), r.host_id.clone()).await;
                return Err(Status::invalid_argument(msg));
            }
        };
        let now = now_ms();
        let record = HostRecord {
            id: r.host_id.clone(),
            token_labels: Default::default(),
            agent_labels: Default::default(),
            state: "enrolled".into(),
            enrolled_at: now,
            token_id: token.id.clone(),
            last_seen: None,
            agent_version: r.agent_version.clone(),
            address: peer.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            boot_id: String::new(),
            facts: HostFacts::default(),
            cert_serial: info.serial.clone(),
            cert_not_after: ms(info.not_after),
            prev_cert_serial: String::new(),
        };
        let (tid, hash, rec, key) = (
            token.id.clone(),
            token.secret_hash(),
            record.clone(),
            info.key_sha256.clone(),
        );
        let outcome = app
            .store
            .call(move |c| store::enroll_with_token(c, &tid, &hash, &rec, &key, now))
            .await
            .map_err(|e| Status::internal(format!("store: {e}")))?;
        let store::Enrolled { labels, again } = match outcome {
            Ok(e) => e,
            Err(refusal) => {
                let msg = deny(refusal.to_string(), r.host_id.clone()).await;
                return Err(Status::permission_denied(msg));
            }
        };
        if again {
            // The host is known: only its certificate is new. (If it was
            // removed meanwhile, it stays removed.)
            app.fleet
                .renewed(&record.id, "", record.cert_serial, record.cert_not_after);
        } else {
            let mut record = record;
            record.token_labels = labels.clone();
            app.fleet.add(record);
            // `hosts remove` deletes the row, then forgets the host. Done
            // between our commit and the add above, it would leave the host
            // in memory only, able to open sessions until a restart; seen
            // from here after the add, one of the two always catches it.
            let id = r.host_id.clone();
            let still = app
                .store
                .call(move |c| store::host_exists(c, &id))
                .await
                .map_err(|e| Status::internal(format!("store: {e}")))?;
            if !still {
                app.fleet.remove(&r.host_id);
                return Err(Status::permission_denied(format!(
                    "host {} was removed while it enrolled",
                    r.host_id
                )));
            }
        }
        app.audit(Audit {
            actor: peer.actor(),
            action: "host.enroll",
            target: r.host_id.clone(),
            outcome: Outcome::Ok,
            detail: format!(
                "token {} labels {}{}",
                token.id,
                cutover_common::labels::format(&labels),
                if again {
                    " (the same enrolment again, same key: its first answer did not arrive; the token was not used again)"
                } else {
                    ""
                }
            ),
        })
        .await;
        Ok(Response::new(pb::EnrollResponse {
            host_id: r.host_id,
            certificate_pem: cert_pem,
            ca_certificate_pem: app.ca.cert_pem().to_string(),
            labels: labels.into_iter().collect(),
        }))
    }
}
