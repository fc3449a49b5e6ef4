//! The cluster PKI: a private CA (rcgen) that signs the coordinator's server
//! certificate, operators' client certificates and, from CSRs, hosts'
//! short-lived client certificates.
//!
//! Keys are ECDSA P-256. Each issued certificate carries one identity (see
//! [`crate::identity`]) and the one extended key usage its role needs: a host
//! certificate cannot serve TLS and the server certificate cannot be used as
//! a client. Private keys are written 0600 and never leave the machine that
//! generated them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::identity::{self, CertInfo, Identity};

/// What went wrong creating, loading or using PKI material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} already exists; refusing to overwrite a CA (remove the directory to start a new cluster)"
    )]
    Exists { path: PathBuf },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("certificate generation failed")]
    Generate(#[source] rcgen::Error),
    #[error("certificate signing request rejected: {0}")]
    BadCsr(String),
    #[error("`{0}` is not a CA fingerprint: expected sha256: followed by 64 hex digits")]
    BadFingerprint(String),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (the coordinator).
    Server,
    /// TLS client (hosts and operators).
    Client,
}

/// File names inside a PKI directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

/// A certificate request to the CA.
#[derive(Debug, Clone)]
pub struct Issue {
    pub identity: Identity,
    pub usage: Usage,
    pub lifetime: Duration,
    /// Extra DNS names and IP addresses (server certificates).
    pub names: Vec<String>,
    /// Start of validity; `None` means now (backdated a little for skew).
    /// When set, the certificate ends at `not_before + lifetime`.
    pub not_before: Option<SystemTime>,
}

impl Issue {
    pub fn new(identity: Identity, usage: Usage, lifetime: Duration) -> Self {
        Self {
            identity,
            usage,
            lifetime,
            names: Vec::new(),
            not_before: None,
        }
    }
}

/// The cluster certificate authority.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA valid for ten years.
    pub fn generate(cluster_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("Cutover cluster CA ({cluster_name})"),
        );
        dn.push(DnType::OrganizationName, "Cutover");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// Loads `ca.crt` and `ca.key` from a PKI directory.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = read_string(&cert_path)?;
        let key_pem = fsutil::read_secret(&key_path).map_err(|source| PkiError::Read {
            path: key_path.clone(),
            source,
        })?;
        let key_pem = String::from_utf8(key_pem).map_err(|_| invalid(&key_path, "not PEM text"))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| invalid(&key_path, &format!("not a private key: {e}")))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| invalid(&cert_path, &format!("not a PEM certificate: {e}")))?;
        Ok(Self {
            cert_pem,
            cert_der,
            key,
        })
    }

    /// Writes `ca.crt` (0644) and `ca.key` (0600), refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(PkiError::Exists { path: p.clone() });
            }
        }
        fsutil::create_dir_with_mode(dir, 0o700).map_err(|source| PkiError::Write {
            path: dir.into(),
            source,
        })?;
        write(&key_path, self.key.serialize_pem().as_bytes(), SECRET_MODE)?;
        write(&cert_path, self.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `sha256:HEX` of the CA certificate, what agents pin at enrollment.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key).map_err(PkiError::Generate)
    }

    fn params(&self, req: &Issue) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.identity.actor());
        dn.push(DnType::OrganizationName, "Cutover");
        params.distinguished_name = dn;
        let uri = req.identity.uri().try_into().map_err(PkiError::Generate)?;
        params.subject_alt_names.push(SanType::URI(uri));
        for name in &req.names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into().map_err(PkiError::Generate)?),
            };
            params.subject_alt_names.push(san);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match req.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let start = req.not_before.unwrap_or_else(|| {
            // Backdate a little for clock skew, but never by more than a tenth
            // of the lifetime so short test lifetimes stay meaningful.
            SystemTime::now() - (req.lifetime / 10).min(Duration::from_secs(300))
        });
        params.not_before = time::OffsetDateTime::from(start);
        params.not_after = time::OffsetDateTime::from(match req.not_before {
            Some(start) => start + req.lifetime,
            None => SystemTime::now() + req.lifetime,
        });
        params.serial_number = Some(random_serial());
        Ok(params)
    }

    /// Issues a certificate with a new key pair generated here (the server
    /// certificate and operator certificates). Returns (cert PEM, key).
    pub fn issue(&self, req: &Issue) -> Result<(String, KeyPair), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Generate)?;
        let cert = self
            .params(req)?
            .signed_by(&key, &self.issuer()?)
            .map_err(PkiError::Generate)?;
        Ok((cert.pem(), key))
    }

    /// Signs a host's CSR. Only the CSR's public key is used: names, usages
    /// and lifetime come from `req`, so a host cannot ask for more.
    pub fn sign_csr(&self, csr_der: &[u8], req: &Issue) -> Result<String, PkiError> {
        let der = CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        csr.params = self.params(req)?;
        let cert = csr.signed_by(&self.issuer()?).map_err(PkiError::Generate)?;
        Ok(cert.pem())
    }
}

/// A CSR for a key pair (the agent's side of enrollment and renewal). The
/// CA ignores everything in it but the public key.
pub fn make_csr(key: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let params = CertificateParams::default();
    let csr = params.serialize_request(key).map_err(PkiError::Generate)?;
    Ok(csr.der().to_vec())
}

/// Generates a key pair for a host or operator.
pub fn generate_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(PkiError::Generate)
}

/// `sha256:HEX` of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Parses `sha256:HEX` (case-insensitive hex, `:` separators allowed).
pub fn parse_fingerprint(s: &str) -> Result<String, PkiError> {
    let bad = || PkiError::BadFingerprint(s.into());
    let hexpart = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
    let cleaned: String = hexpart
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let bytes = hex::decode(&cleaned).map_err(|_| bad())?;
    if bytes.len() != 32 {
        return Err(bad());
    }
    Ok(format!("sha256:{cleaned}"))
}

/// A certificate chain and its private key, as used for TLS.
#[derive(Debug)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Parses PEM text holding one or more certificates (leaf first) and one
    /// private key; `origin` names the source in errors.
    pub fn from_pem(pem: &[u8], origin: &Path) -> Result<Self, PkiError> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(origin, &format!("bad PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(origin, "no CERTIFICATE block"));
        }
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| invalid(origin, &format!("no usable PRIVATE KEY block: {e}")))?;
        Ok(Self { chain, key })
    }

    /// Loads a bundle file (certificate chain + key), refusing one that
    /// others can read.
    pub fn load_bundle(path: &Path) -> Result<Self, PkiError> {
        let pem = fsutil::read_secret(path).map_err(|source| PkiError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_pem(&pem, path)
    }

    /// Loads a certificate file and a separate key file.
    pub fn load_pair(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let cert_pem = read_string(cert)?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(cert, &format!("bad PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(cert, "no CERTIFICATE block"));
        }
        let key_pem = fsutil::read_secret(key).map_err(|source| PkiError::Read {
            path: key.into(),
            source,
        })?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| invalid(key, &format!("no usable PRIVATE KEY block: {e}")))?;
        Ok(Self {
            chain,
            key: key_der,
        })
    }

    /// Identity and validity of the leaf certificate.
    pub fn info(&self) -> Result<CertInfo, PkiError> {
        Ok(identity::cert_info(&self.chain[0])?)
    }
}

/// PEM text of a bundle: certificate then key.
pub fn bundle_pem(cert_pem: &str, key: &KeyPair) -> String {
    format!("{}{}", ensure_newline(cert_pem), key.serialize_pem())
}

/// Writes a bundle file 0600, atomically.
pub fn write_bundle(path: &Path, cert_pem: &str, key: &KeyPair) -> Result<(), PkiError> {
    write(path, bundle_pem(cert_pem, key).as_bytes(), SECRET_MODE)
}

/// Reads all certificates of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read_string(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, &format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Parses the first certificate of PEM text.
pub fn cert_der_from_pem(pem: &str, origin: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| invalid(Path::new(origin), &format!("not a PEM certificate: {e}")))
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.into(),
        source,
    })
}

/// Writes a file atomically with a mode, mapping the error.
pub fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    fsutil::write_atomic(path, data, mode).map_err(|source| PkiError::Write {
        path: path.into(),
        source,
    })
}

fn invalid(path: &Path, what: &str) -> PkiError {
    PkiError::Invalid {
        path: path.into(),
        what: what.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_signs_a_host_csr_with_only_the_identity_it_chooses() {
        let ca = Ca::generate("test").unwrap();
        let key = generate_key().unwrap();
        let csr = make_csr(&key).unwrap();
        let req = Issue::new(
            Identity::Host("web-1".into()),
            Usage::Client,
            Duration::from_secs(3600),
        );
        let pem = ca.sign_csr(&csr, &req).unwrap();
        let der = cert_der_from_pem(&pem, "test").unwrap();
        let info = identity::cert_info(&der).unwrap();
        assert_eq!(info.identity, Identity::Host("web-1".into()));
        let life = info.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(life <= Duration::from_secs(3600) && life > Duration::from_secs(3500));
    }

    #[test]
    fn a_garbage_csr_is_refused() {
        let ca = Ca::generate("test").unwrap();
        let req = Issue::new(
            Identity::Host("a".into()),
            Usage::Client,
            Duration::from_secs(60),
        );
        assert!(matches!(
            ca.sign_csr(b"nope", &req),
            Err(PkiError::BadCsr(_))
        ));
    }

    #[test]
    fn a_ca_saves_loads_and_keeps_its_fingerprint_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test").unwrap();
        ca.save(dir.path()).unwrap();
        let loaded = Ca::load(dir.path()).unwrap();
        assert_eq!(loaded.fingerprint(), ca.fingerprint());
        assert!(matches!(ca.save(dir.path()), Err(PkiError::Exists { .. })));
    }

    #[test]
    fn fingerprints_parse_in_the_forms_people_paste() {
        let fp = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            parse_fingerprint(&fp).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(parse_fingerprint("ab").is_err());
        assert!(parse_fingerprint("sha256:abcd").is_err());
    }
}

/// Whether a DER certificate certifies `key`'s public key.
pub fn cert_matches_key(cert_der: &[u8], key: &KeyPair) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(cert_der) {
        Ok((_, cert)) => cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        Err(_) => false,
    }
}

/// Re-exported so callers need not depend on rcgen directly.
pub use rcgen::KeyPair as HostKey;

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_certificate_matches_only_the_key_it_was_issued_for() {
        let ca = Ca::generate("t").unwrap();
        let key = generate_key().unwrap();
        let other = generate_key().unwrap();
        let req = Issue::new(
            Identity::Host("a".into()),
            Usage::Client,
            Duration::from_secs(60),
        );
        let pem = ca.sign_csr(&make_csr(&key).unwrap(), &req).unwrap();
        let der = cert_der_from_pem(&pem, "t").unwrap();
        assert!(cert_matches_key(&der, &key));
        assert!(!cert_matches_key(&der, &other));
    }
}

/// When a DER certificate expires, Unix seconds (None: not a certificate).
pub fn not_after_secs(cert_der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(cert_der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}
