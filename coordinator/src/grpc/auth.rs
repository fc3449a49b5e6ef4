//! Who is calling, and may they? Peer identity comes from the client
//! certificate, parsed once at the TLS handshake ([`PeerInfo`]); operator
//! roles come from the store, so revoking or changing a role takes effect
//! on the next call.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::SystemTime;

use cutover_common::identity::Identity;
use cutover_proto::v1 as pb;
use tonic::{Request, Status};

use crate::app::App;
use crate::store::{self, Audit, Outcome};

/// What the TLS handshake established about a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: Option<SocketAddr>,
    /// `None` when the client presented no certificate.
    pub identity: Option<Identity>,
    pub cert_not_after: Option<SystemTime>,
    /// Lowercase hex serial of the client certificate (empty without one).
    pub cert_serial: String,
}

impl PeerInfo {
    /// A name for logs and the audit log.
    pub fn actor(&self) -> String {
        match (&self.identity, self.addr) {
            (Some(id), _) => id.actor(),
            (None, Some(a)) => format!("anonymous@{}", a.ip()),
            (None, None) => "anonymous".into(),
        }
    }
}

/// The peer of a request (set by the accept loop for every connection).
pub fn peer<T>(req: &Request<T>) -> PeerInfo {
    req.extensions()
        .get::<PeerInfo>()
        .cloned()
        .unwrap_or(PeerInfo {
            addr: None,
            identity: None,
            cert_not_after: None,
            cert_serial: String::new(),
        })
}

/// What an operator may do. Ordered: each role can do what the ones below
/// it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read fleet, deployments, history, audit.
    Viewer,
    /// Also deploy, promote, pause, resume, abort, roll back, drain.
    Deployer,
    /// Also create join tokens and remove hosts.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "deployer" => Ok(Role::Deployer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "`{other}` is not a role: expected admin, deployer or viewer"
            )),
        }
    }
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub peer: PeerInfo,
}

/// What a mutating call acts on, for its audit line (a refusal's too:
/// "who was denied what, on what").
pub trait AuditTarget {
    fn audit_target(&self) -> String;
}

impl AuditTarget for pb::SendCommandRequest {
    fn audit_target(&self) -> String {
        self.host_id.clone()
    }
}

impl AuditTarget for pb::RemoveHostRequest {
    fn audit_target(&self) -> String {
        self.host_id.clone()
    }
}

impl AuditTarget for pb::CreateTokenRequest {
    fn audit_target(&self) -> String {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        format!("token labels {}", labels.join(","))
    }
}

impl AuditTarget for pb::SubmitDeploymentRequest {
    fn audit_target(&self) -> String {
        // The service, when the spec names one it can read (the full
        // parse comes later, after the caller is known).
        let Some(s) = &self.spec else {
            return String::new();
        };
        if let Some(typed) = &s.spec {
            return typed.service.clone();
        }
        toml::from_str::<toml::Table>(&s.spec_toml)
            .ok()
            .and_then(|t| {
                t.get("service")
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .unwrap_or_default()
    }
}

impl AuditTarget for pb::ControlDeploymentRequest {
    fn audit_target(&self) -> String {
        self.id.clone()
    }
}

impl AuditTarget for pb::RollbackServiceRequest {
    fn audit_target(&self) -> String {
        self.service.clone()
    }
}

/// [`authorize`] for a mutating call: a refusal is audited as `action` on
/// what the request acts on.
pub async fn authorize_change<T: AuditTarget>(
    app: &App,
    req: &Request<T>,
    required: Role,
    action: &'static str,
) -> Result<Operator, Status> {
    // The target is read only for a refusal's audit line (a submit's is
    // a parse of its spec).
    authorize_inner(app, req, required, Some((action, T::audit_target))).await
}

/// Checks that the caller is an operator with at least `required`. When
/// `action` is a mutating action, a refusal is written to the audit log.
pub async fn authorize<T>(
    app: &App,
    req: &Request<T>,
    required: Role,
    action: Option<&'static str>,
) -> Result<Operator, Status> {
    authorize_inner(
        app,
        req,
        required,
        action.map(|a| (a, no_target::<T> as fn(&T) -> String)),
    )
    .await
}

/// A mutating call's audit action, and how to read its target from the
/// request (only when it is refused).
type AuditedAs<T> = (&'static str, fn(&T) -> String);

fn no_target<T>(_: &T) -> String {
    String::new()
}

async fn authorize_inner<T>(
    app: &App,
    req: &Request<T>,
    required: Role,
    action: Option<AuditedAs<T>>,
) -> Result<Operator, Status> {
    let peer = peer(req);
    let refuse = |status: Status| async {
        if let Some((action, target)) = &action {
            app.audit(Audit {
                actor: peer.actor(),
                action,
                target: target(req.get_ref()),
                outcome: Outcome::Denied,
                detail: status.message().to_string(),
            })
            .await;
        }
        tracing::warn!(peer = %peer.actor(), reason = status.message(), "control call refused");
        status
    };
    let name = match &peer.identity {
        Some(Identity::Operator(name)) => name.clone(),
        Some(other) => {
            return Err(refuse(Status::permission_denied(format!(
                "{other} is not an operator: control calls need an operator certificate"
            )))
            .await);
        }
        None => {
            return Err(refuse(Status::unauthenticated(
                "no client certificate: control calls need an operator certificate (see `cutover ca issue-operator`)",
            ))
            .await);
        }
    };
    let (lookup, serial) = (name.clone(), peer.cert_serial.clone());
    let (rec, cert) = app
        .store
        .call(move |c| {
            Ok((
                store::get_operator(c, &lookup)?,
                store::operator_cert(c, &lookup, &serial)?,
            ))
        })
        .await
        .map_err(|e| Status::internal(format!("store: {e}")))?;
    let Some(rec) = rec else {
        return Err(refuse(Status::permission_denied(format!(
            "operator `{name}` is not known to this coordinator"
        )))
        .await);
    };
    // Checked on every call, not only at the handshake: a revocation
    // (`cutover ca revoke-operator`) ends access on the operator's next
    // call, even on a connection already open.
    match cert {
        store::OperatorCert::Valid => {}
        store::OperatorCert::Revoked { why, .. } => {
            return Err(refuse(Status::permission_denied(format!(
                "the certificate of operator `{name}` (serial {}) has been revoked: {why}",
                peer.cert_serial
            )))
            .await);
        }
        store::OperatorCert::Unknown => {
            return Err(refuse(Status::permission_denied(format!(
                "the certificate of operator `{name}` (serial {}) was not issued by this coordinator's store",
                peer.cert_serial
            )))
            .await);
        }
    }
    if rec.revoked_at.is_some() {
        return Err(refuse(Status::permission_denied(format!(
            "operator `{name}` has been revoked"
        )))
        .await);
    }
    let role: Role = rec
        .role
        .parse()
        .map_err(|e: String| Status::internal(format!("stored role for `{name}`: {e}")))?;
    if role < required {
        return Err(refuse(Status::permission_denied(format!(
            "operator `{name}` has role {} but this needs {}",
            role.as_str(),
            required.as_str()
        )))
        .await);
    }
    Ok(Operator { name, role, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_with_a_clear_error() {
        assert!(Role::Admin > Role::Deployer && Role::Deployer > Role::Viewer);
        assert_eq!("deployer".parse::<Role>().unwrap(), Role::Deployer);
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("expected admin, deployer or viewer")
        );
    }
}
