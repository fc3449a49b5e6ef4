//! Who is on the other end of a connection, as carried in certificates.
//!
//! Every certificate the cluster CA signs carries exactly one identity as a
//! URI subject alternative name in the `cutover` trust domain:
//! `spiffe://cutover/host/<host-id>`, `spiffe://cutover/operator/<name>` or
//! `spiffe://cutover/coordinator`. The coordinator's server certificate also
//! carries the DNS name [`COORDINATOR_SERVER_NAME`], which clients verify
//! whatever address they dialled.

use std::fmt;
use std::time::SystemTime;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The DNS name in the coordinator's certificate that every client checks.
pub const COORDINATOR_SERVER_NAME: &str = "coordinator.cutover";

const URI_PREFIX: &str = "spiffe://cutover/";

/// A peer's identity from its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An enrolled host, by host id.
    Host(String),
    /// An operator (person or pipeline), by name.
    Operator(String),
    /// The coordinator itself.
    Coordinator,
}

/// A certificate or name that does not carry a usable identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("certificate could not be parsed: {0}")]
    Parse(String),
    #[error("certificate carries no Cutover identity (expected one URI SAN spiffe://cutover/...)")]
    Missing,
    #[error("certificate carries more than one Cutover identity")]
    Ambiguous,
    #[error("`{0}` is not a Cutover identity URI")]
    Unknown(String),
    #[error(
        "`{0}` is not a valid name: expected 1-63 characters of a-z, 0-9 and `-`, `.`, starting and ending with a letter or digit"
    )]
    BadName(String),
}

/// Checks a host id or operator name: DNS-label-like, lowercase.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        // Cut: the name comes from a peer, and the error is logged,
        // audited and sent back.
        Err(IdentityError::BadName(crate::truncate_for_display(
            name, 80,
        )))
    }
}

/// A hostname turned into a valid host id (lowercased, other characters
/// replaced by `-`).
pub fn host_id_from_hostname(hostname: &str) -> String {
    let s: String = hostname
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let s = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() { "host".into() } else { s }
}

impl Identity {
    /// The SAN URI that carries this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Host(id) => format!("{URI_PREFIX}host/{id}"),
            Identity::Operator(name) => format!("{URI_PREFIX}operator/{name}"),
            Identity::Coordinator => format!("{URI_PREFIX}coordinator"),
        }
    }

    /// Parses a SAN URI.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix(URI_PREFIX)
            .ok_or_else(|| IdentityError::Unknown(uri.into()))?;
        if rest == "coordinator" {
            return Ok(Identity::Coordinator);
        }
        let (kind, name) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::Unknown(uri.into()))?;
        check_name(name)?;
        match kind {
            "host" => Ok(Identity::Host(name.into())),
            "operator" => Ok(Identity::Operator(name.into())),
            _ => Err(IdentityError::Unknown(uri.into())),
        }
    }

    /// The `actor` string used in logs and the audit log.
    pub fn actor(&self) -> String {
        match self {
            Identity::Host(id) => format!("host:{id}"),
            Identity::Operator(n) => format!("operator:{n}"),
            Identity::Coordinator => "coordinator".into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.actor())
    }
}

/// What the coordinator and agents need to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Identity,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Lowercase hex of the serial number.
    pub serial: String,
    /// Lowercase hex of the SHA-256 of its public key (SubjectPublicKeyInfo).
    pub key_sha256: String,
}

/// Reads the identity and validity of a DER certificate. Does not verify
/// the signature: callers use it on certificates rustls already verified,
/// or on their own.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let mut found = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && uri.starts_with(URI_PREFIX)
            {
                if found.is_some() {
                    return Err(IdentityError::Ambiguous);
                }
                found = Some(Identity::from_uri(uri)?);
            }
        }
    }
    let identity = found.ok_or(IdentityError::Missing)?;
    let validity = cert.validity();
    let to_sys = |t: x509_parser::time::ASN1Time| {
        crate::time::from_unix_ms(t.timestamp().saturating_mul(1000))
    };
    Ok(CertInfo {
        identity,
        not_before: to_sys(validity.not_before),
        not_after: to_sys(validity.not_after),
        serial: hex::encode(cert.raw_serial()),
        key_sha256: {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(cert.public_key().raw))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for id in [
            Identity::Host("web-1".into()),
            Identity::Operator("alice".into()),
            Identity::Coordinator,
        ] {
            assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        }
    }

    #[test]
    fn foreign_or_malformed_uris_are_not_identities() {
        assert!(Identity::from_uri("spiffe://other/host/a").is_err());
        assert!(Identity::from_uri("spiffe://cutover/host/UPPER").is_err());
        assert!(Identity::from_uri("spiffe://cutover/host/a/b").is_err());
        assert!(Identity::from_uri("spiffe://cutover/root/a").is_err());
    }

    #[test]
    fn hostnames_become_valid_host_ids() {
        assert_eq!(host_id_from_hostname("Web_01.Example"), "web-01.example");
        assert_eq!(host_id_from_hostname("--"), "host");
        check_name(&host_id_from_hostname("ÄÖ-box")).unwrap();
    }
}
