//! The host's identity on disk, written at enrollment and on renewal:
//!
//! ```text
//! <state_dir>/identity/
//!   host.pem          certificate + private key (0600), replaced atomically
//!   ca.crt            the cluster CA pinned at enrollment
//!   enrollment.json   host id, coordinator URL, CA fingerprint, labels
//! ```

use std::path::{Path, PathBuf};

use cutover_common::fsutil;
use cutover_common::labels::Labels;
use cutover_common::pki::CertificateDer;
use cutover_common::pki::{self, PkiError, TlsIdentity};
use serde::{Deserialize, Serialize};

/// What enrollment recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrollment {
    pub host_id: String,
    pub coordinator: String,
    pub ca_fingerprint: String,
    pub labels: Labels,
    pub enrolled_at_ms: i64,
}

/// Reading or writing the identity failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("this host is not enrolled ({path} is missing): run `cutover-agent enroll` first")]
    NotEnrolled { path: PathBuf },
    #[error("{path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Paths of the identity files.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub dir: PathBuf,
}

impl IdentityFiles {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.into() }
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("host.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn enrollment(&self) -> PathBuf {
        self.dir.join("enrollment.json")
    }

    /// Whether an enrollment exists.
    pub fn exists(&self) -> bool {
        self.enrollment().exists()
    }

    /// Reads `enrollment.json`.
    pub fn enrollment_record(&self) -> Result<Enrollment, IdentityError> {
        let path = self.enrollment();
        let text = std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                IdentityError::NotEnrolled { path: path.clone() }
            } else {
                IdentityError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        serde_json::from_slice(&text).map_err(|source| IdentityError::Corrupt { path, source })
    }

    /// The current certificate and key.
    pub fn tls_identity(&self) -> Result<TlsIdentity, IdentityError> {
        Ok(TlsIdentity::load_bundle(&self.bundle())?)
    }

    /// The pinned CA.
    pub fn ca_certs(&self) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        Ok(pki::load_certs(&self.ca())?)
    }

    /// Writes everything enrollment produced. The enrollment record is
    /// written last: its presence means the rest is complete.
    pub fn save(
        &self,
        cert_pem: &str,
        key: &pki::HostKey,
        ca_pem: &str,
        record: &Enrollment,
    ) -> Result<(), PkiError> {
        fsutil::create_dir_with_mode(&self.dir, 0o700).map_err(|source| PkiError::Write {
            path: self.dir.clone(),
            source,
        })?;
        pki::write_bundle(&self.bundle(), cert_pem, key)?;
        pki::write(&self.ca(), ca_pem.as_bytes(), fsutil::PUBLIC_MODE)?;
        let json = serde_json::to_vec_pretty(record).expect("serializable");
        pki::write(&self.enrollment(), &json, fsutil::PUBLIC_MODE)
    }

    /// Replaces the certificate and key after a renewal, atomically.
    pub fn replace_bundle(&self, cert_pem: &str, key: &pki::HostKey) -> Result<(), PkiError> {
        pki::write_bundle(&self.bundle(), cert_pem, key)
    }
}
