//! The coordinator's side of the cluster PKI: `cutover ca init`, operator
//! certificates, and keeping the server certificate current.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cutover_common::identity::{COORDINATOR_SERVER_NAME, Identity};
use cutover_common::pki::{self, Ca, Issue, PkiError, TlsIdentity, Usage};
use cutover_common::time::now_ms;

use crate::app::ms;
use crate::config::CoordinatorConfig;
use crate::grpc::auth::Role;
use crate::store::{self, Audit, OperatorRecord, Outcome, Store, StoreError};

/// Lifetime of the coordinator's server certificate.
const SERVER_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Re-issue the server certificate at start when it has less than this left.
const SERVER_CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Setting up or using the PKI failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no cluster CA in {dir}: run `cutover ca init` first")]
    NoCa { dir: PathBuf },
    #[error("creating {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Revoke(String),
}

/// What `ca init` created.
#[derive(Debug)]
pub struct InitOutcome {
    pub pki_dir: PathBuf,
    pub fingerprint: String,
    pub admin: IssuedOperator,
}

/// Files of an issued operator certificate.
#[derive(Debug)]
pub struct IssuedOperator {
    pub name: String,
    pub bundle: PathBuf,
    pub cli_config: PathBuf,
    pub not_after: SystemTime,
}

fn mkdir(path: &Path, mode: u32) -> Result<(), SetupError> {
    cutover_common::fsutil::create_dir_with_mode(path, mode).map_err(|source| SetupError::Dir {
        path: path.into(),
        source,
    })
}

/// Opens the store under the config's state dir.
/// Creates the state directory (mode 0700) if needed.
pub fn ensure_state_dir(cfg: &CoordinatorConfig) -> Result<(), SetupError> {
    mkdir(&cfg.state_dir, 0o700)
}

pub fn open_store(cfg: &CoordinatorConfig) -> Result<Store, SetupError> {
    mkdir(&cfg.state_dir, 0o700)?;
    Ok(Store::open_at(&cfg.store_location()?)?)
}

/// `cutover ca init`: creates the CA, the server certificate and a first
/// `admin` operator. Refuses to overwrite an existing CA.
pub fn init(cfg: &CoordinatorConfig, cluster: &str) -> Result<InitOutcome, SetupError> {
    let dir = cfg.pki_dir();
    mkdir(&dir, 0o700)?;
    let ca = Ca::generate(cluster)?;
    ca.save(&dir)?;
    issue_server_cert(cfg, &ca)?;
    let store = open_store(cfg)?;
    let admin = issue_operator(
        cfg,
        &ca,
        &store,
        "admin",
        Role::Admin,
        cfg.operator_cert_ttl,
        None,
    )?;
    Ok(InitOutcome {
        pki_dir: dir,
        fingerprint: ca.fingerprint(),
        admin,
    })
}

/// Loads the CA from the config's PKI dir.
pub fn load_ca(cfg: &CoordinatorConfig) -> Result<Ca, SetupError> {
    let dir = cfg.pki_dir();
    if !dir.join(pki::CA_CERT).exists() {
        return Err(SetupError::NoCa { dir });
    }
    Ok(Ca::load(&dir)?)
}

fn issue_server_cert(cfg: &CoordinatorConfig, ca: &Ca) -> Result<(), SetupError> {
    let dir = cfg.pki_dir();
    let mut req = Issue::new(Identity::Coordinator, Usage::Server, SERVER_CERT_TTL);
    req.names.push(COORDINATOR_SERVER_NAME.into());
    req.names.push("localhost".into());
    req.names.extend(cfg.server_names.iter().cloned());
    let (cert, key) = ca.issue(&req)?;
    // The chain carries the CA so that enrolling hosts can pin it.
    let chain = format!("{cert}{}", ca.cert_pem());
    pki::write(
        &dir.join(pki::SERVER_KEY),
        key.serialize_pem().as_bytes(),
        cutover_common::fsutil::SECRET_MODE,
    )?;
    pki::write(
        &dir.join(pki::SERVER_CERT),
        chain.as_bytes(),
        cutover_common::fsutil::PUBLIC_MODE,
    )?;
    Ok(())
}

/// Loads the server certificate, issuing a new one when it is missing or
/// has less than 30 days left.
pub fn server_identity(cfg: &CoordinatorConfig, ca: &Ca) -> Result<TlsIdentity, SetupError> {
    let dir = cfg.pki_dir();
    let (cert, key) = (dir.join(pki::SERVER_CERT), dir.join(pki::SERVER_KEY));
    let current = if cert.exists() && key.exists() {
        let id = TlsIdentity::load_pair(&cert, &key)?;
        let fresh = id
            .info()
            .map(|i| i.not_after > SystemTime::now() + SERVER_CERT_RENEW_BEFORE)
            .unwrap_or(false);
        fresh.then_some(id)
    } else {
        None
    };
    match current {
        Some(id) => Ok(id),
        None => {
            tracing::info!(dir = %dir.display(), "issuing a new server certificate");
            issue_server_cert(cfg, ca)?;
            Ok(TlsIdentity::load_pair(&cert, &key)?)
        }
    }
}

/// Issues an operator certificate into `out` (default `pki_dir/operators`):
/// `<name>.pem` (certificate and key, 0600) and `<name>.toml` (a CLI config
/// pointing at it). Records the operator and its role in the store.
pub fn issue_operator(
    cfg: &CoordinatorConfig,
    ca: &Ca,
    store: &Store,
    name: &str,
    role: Role,
    ttl: Duration,
    out: Option<&Path>,
) -> Result<IssuedOperator, SetupError> {
    cutover_common::identity::check_name(name).map_err(PkiError::from)?;
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.pki_dir().join("operators"));
    mkdir(&dir, 0o700)?;
    let (cert_pem, key) = ca.issue(&Issue::new(
        Identity::Operator(name.into()),
        Usage::Client,
        ttl,
    ))?;
    let info = cutover_common::identity::cert_info(&pki::cert_der_from_pem(
        &cert_pem,
        "issued certificate",
    )?)
    .map_err(PkiError::from)?;
    let bundle = dir.join(format!("{name}.pem"));
    pki::write_bundle(&bundle, &cert_pem, &key)?;
    let ca_path = cfg.pki_dir().join(pki::CA_CERT);
    let url = cfg.advertised_url(cfg.listen);
    let cli = format!(
        "# cutover CLI config for operator `{name}` ({role}).\n# Use it with: export CUTOVER_CLI_CONFIG={path}\ncoordinator = \"{url}\"\nca = \"{ca}\"\nidentity = \"{bundle}\"\n",
        role = role.as_str(),
        path = dir.join(format!("{name}.toml")).display(),
        ca = ca_path.display(),
        bundle = bundle.display(),
    );
    let cli_config = dir.join(format!("{name}.toml"));
    pki::write(
        &cli_config,
        cli.as_bytes(),
        cutover_common::fsutil::SECRET_MODE,
    )?;
    let rec = OperatorRecord {
        name: name.into(),
        role: role.as_str().into(),
        created_at: now_ms(),
        cert_serial: info.serial.clone(),
        cert_not_after: ms(info.not_after),
        revoked_at: None,
    };
    store.with(|c| {
        store::upsert_operator(c, &rec)?;
        let superseded =
            store::operator_cert_issued(c, &info.serial, name, rec.created_at, rec.cert_not_after)?;
        store::audit(
            c,
            now_ms(),
            &Audit {
                actor: "local:ca".into(),
                action: "operator.issue",
                target: name.into(),
                outcome: Outcome::Ok,
                detail: format!(
                    "role {} serial {}{}",
                    role.as_str(),
                    info.serial,
                    if superseded > 0 {
                        format!(" ({superseded} earlier certificate(s) of this name revoked)")
                    } else {
                        String::new()
                    }
                ),
            },
        )
    })?;
    Ok(IssuedOperator {
        name: name.into(),
        bundle,
        cli_config,
        not_after: info.not_after,
    })
}

/// Revokes operator `name` (all its certificates) or the certificate
/// `serial`, and audits it. Returns what was done, for the operator.
pub fn revoke_operator(
    store: &Store,
    name: Option<&str>,
    serial: Option<&str>,
) -> Result<String, SetupError> {
    let now = now_ms();
    store
        .with(|c| {
            let (target, detail) = match (name, serial) {
                (Some(name), _) => match store::revoke_operator(c, name, now)? {
                    Some(n) => (
                        name.to_string(),
                        format!("{n} valid certificate(s) revoked"),
                    ),
                    None => {
                        return Ok(Err(format!("no operator named `{name}` in this store")));
                    }
                },
                (None, Some(serial)) => {
                    let serial = serial.trim().to_ascii_lowercase().replace(':', "");
                    match store::revoke_operator_cert(c, &serial, now)? {
                        Some(name) => (name, format!("certificate {serial} revoked")),
                        None => {
                            return Ok(Err(format!(
                                "no operator certificate with serial {serial} in this store"
                            )));
                        }
                    }
                }
                (None, None) => return Ok(Err("give --name or --serial".into())),
            };
            store::audit(
                c,
                now,
                &Audit {
                    actor: "local:ca".into(),
                    action: "operator.revoke",
                    target: target.clone(),
                    outcome: Outcome::Ok,
                    detail: detail.clone(),
                },
            )?;
            Ok(Ok(format!("operator {target}: {detail}")))
        })?
        .map_err(SetupError::Revoke)
}
