//! The PostgreSQL backend: connecting (password from a file, TLS to
//! anything but this machine), the schema's migrations and the leader
//! lease's table.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::StoreError;
use super::db::{Conn, PgConn, pg_err};

/// A PostgreSQL database as configured: `store = "postgres://..."`,
/// `store_password_file`, `store_ca_file`. Never shows the password.
#[derive(Clone)]
pub struct PgTarget {
    /// The URL as configured (it holds no password: refused at load).
    pub url: String,
    password: Option<Vec<u8>>,
    /// PEM roots the server's certificate must chain to; TLS is required
    /// when set.
    pub ca_file: Option<PathBuf>,
    /// The leader term connections made again are fenced with (0: none).
    pub(super) fence: Arc<AtomicU64>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<from file>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl PgTarget {
    /// Checks `url` and reads the password file; nothing connects yet.
    pub fn new(
        url: &str,
        password_file: Option<&std::path::Path>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::PgSetup {
            target: redacted(url),
            why,
        };
        let cfg = postgres::Config::from_str(url)
            .map_err(|e| bad(format!("not a PostgreSQL URL: {e}")))?;
        if cfg.get_password().is_some() {
            return Err(bad(
                "the URL holds a password: put it in a file named by `store_password_file` (mode 0600) and take it out of the URL"
                    .into(),
            ));
        }
        if cfg.get_dbname().is_none() {
            return Err(bad(
                "the URL names no database, e.g. postgres://cutover@db.example/cutover".into(),
            ));
        }
        let password = match password_file {
            None => None,
            Some(p) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(p)
                    .map_err(|e| bad(format!("store_password_file {}: {e}", p.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(bad(format!(
                        "store_password_file {} is readable by others (mode {:o}): `chmod 600` it",
                        p.display(),
                        mode & 0o777
                    )));
                }
                let mut s = std::fs::read(p).map_err(|e| {
                    bad(format!("reading store_password_file {}: {e}", p.display()))
                })?;
                while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    s.pop();
                }
                if s.is_empty() {
                    return Err(bad(format!("store_password_file {} is empty", p.display())));
                }
                Some(s)
            }
        };
        let local = cfg.get_hosts().iter().all(|h| match h {
            postgres::config::Host::Unix(_) => true,
            postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        });
        if !local && ca_file.is_none() {
            return Err(bad(
                "a database on another machine needs TLS: set `store_ca_file` to the PEM certificate(s) its server certificate chains to"
                    .into(),
            ));
        }
        Ok(Self {
            url: url.to_string(),
            password,
            ca_file,
            fence: Arc::new(AtomicU64::new(0)),
        })
    }

    fn config(&self) -> Result<postgres::Config, StoreError> {
        let mut cfg = postgres::Config::from_str(&self.url).map_err(pg_err)?;
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("cutover");
        }
        cfg.connect_timeout(Duration::from_secs(5));
        // A dead peer is noticed in seconds, not after the kernel's two
        // hours; a coordinator stopped (SIGSTOP) inside a transaction has
        // it ended by the server, so that its lease-row lock never holds
        // up a takeover.
        cfg.keepalives(true);
        cfg.keepalives_idle(Duration::from_secs(5));
        cfg.tcp_user_timeout(Duration::from_secs(10));
        cfg.options("-c idle_in_transaction_session_timeout=5000 -c lock_timeout=5000");
        if self.ca_file.is_some() {
            cfg.ssl_mode(postgres::config::SslMode::Require);
        }
        Ok(cfg)
    }

    /// A new connection to the database (the store's, or the leader
    /// lease's own).
    pub fn connect(&self) -> Result<postgres::Client, StoreError> {
        let cfg = self.config()?;
        let setup = |why: String| StoreError::PgSetup {
            target: self.url.clone(),
            why,
        };
        match &self.ca_file {
            None => cfg
                .connect(postgres::NoTls)
                .map_err(|e| setup(format!("connecting: {}", cutover_common::error_chain(&e)))),
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| setup(format!("reading store_ca_file {}: {e}", ca.display())))?;
                let mut roots = rustls::RootCertStore::empty();
                let mut n = 0;
                for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                    let c: rustls::pki_types::CertificateDer<'static> =
                        c.map_err(|e| setup(format!("store_ca_file {}: {e}", ca.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| setup(format!("store_ca_file {}: {e}", ca.display())))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(setup(format!(
                        "store_ca_file {} holds no PEM certificate",
                        ca.display()
                    )));
                }
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| setup(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                cfg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                    .map_err(|e| setup(format!("connecting: {}", cutover_common::error_chain(&e))))
            }
        }
    }
}

/// `url` with any password in it replaced by `***` (for messages).
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Connects and brings the schema up to date.
pub(super) fn open(t: &PgTarget) -> Result<PgConn, StoreError> {
    let mut client = t.connect()?;
    migrate(&mut client).map_err(|e| StoreError::PgSetup {
        target: t.url.clone(),
        why: format!("migrating: {}", cutover_common::error_chain(&e)),
    })?;
    Ok(PgConn::new(client))
}

/// Makes the connection again if the server closed it (a restart, a
/// failover of the database), with the same fence.
pub(super) fn reconnect(c: &mut Conn, t: Option<&PgTarget>) -> Result<(), StoreError> {
    let (Conn::Postgres(pg), Some(t)) = (&mut *c, t) else {
        return Ok(());
    };
    if !pg.is_closed() {
        return Ok(());
    }
    tracing::warn!(store = %t, "the connection to the store was closed: connecting again");
    let mut fresh = PgConn::new(t.connect()?);
    let term = t.fence.load(Ordering::SeqCst);
    fresh.fence = (term != 0).then_some(term);
    *pg = fresh;
    Ok(())
}

/// The schema, one step per entry; applied in order, each once, under an
/// advisory lock so that coordinators starting together migrate once.
/// Step 1 is the SQLite store's migrations 1 to 10 as one (same tables,
/// columns and indexes, PostgreSQL's types); later steps are added to both
/// lists.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE hosts (
        id TEXT PRIMARY KEY NOT NULL,
        token_labels TEXT NOT NULL,
        agent_labels TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        enrolled_at BIGINT NOT NULL,
        token_id TEXT NOT NULL,
        last_seen BIGINT,
        agent_version TEXT NOT NULL DEFAULT '',
        address TEXT NOT NULL DEFAULT '',
        boot_id TEXT NOT NULL DEFAULT '',
        facts TEXT NOT NULL DEFAULT '{}',
        cert_serial TEXT NOT NULL,
        cert_not_after BIGINT NOT NULL,
        enroll_key TEXT NOT NULL DEFAULT '',
        prev_cert_serial TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY NOT NULL,
        secret_hash TEXT NOT NULL,
        labels TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        uses_total BIGINT NOT NULL,
        uses_left BIGINT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE operators (
        name TEXT PRIMARY KEY NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        cert_serial TEXT NOT NULL,
        cert_not_after BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE commands (
        id TEXT PRIMARY KEY NOT NULL,
        host TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        sent_at BIGINT NOT NULL,
        sent_by TEXT NOT NULL,
        ok BIGINT,
        message TEXT,
        result TEXT,
        finished_at BIGINT
    );
    CREATE INDEX commands_host ON commands(host, sent_at);
    CREATE TABLE deployments (
        seq BIGINT PRIMARY KEY,
        id TEXT UNIQUE NOT NULL,
        service TEXT NOT NULL,
        version TEXT NOT NULL,
        spec_toml TEXT NOT NULL,
        artifact_url TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL,
        rollout TEXT NOT NULL,
        phase TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        commit_time BIGINT,
        environment TEXT NOT NULL DEFAULT '',
        rollback_of TEXT,
        request_id TEXT,
        live_group TEXT
    );
    CREATE INDEX deployments_service ON deployments(service, seq);
    CREATE UNIQUE INDEX deployments_request ON deployments(created_by, request_id)
        WHERE request_id IS NOT NULL;
    CREATE INDEX deployments_live_group ON deployments(service, environment, seq)
        WHERE live_group IS NOT NULL;
    CREATE TABLE operator_certs (
        serial TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        revoked_at BIGINT,
        revoked_why TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX operator_certs_name ON operator_certs(name);
    CREATE TABLE requests (
        actor TEXT NOT NULL,
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        digest BYTEA NOT NULL,
        response BYTEA,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (actor, request_id)
    );
    "#,
    // The leader lease (one row) and the coordinators that share the
    // database (crate::leader).
    r#"
    CREATE TABLE cutover_leader (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        term BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        since TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE cutover_coordinators (
        holder TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL
    );
    "#,
    // The lease holder's database session (its backend's pid and start):
    // a standby that finds it ended takes over at once (crate::leader).
    r#"
    ALTER TABLE cutover_leader
        ADD COLUMN holder_pid INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN holder_session TIMESTAMPTZ,
        ADD COLUMN session_holder TEXT NOT NULL DEFAULT '';
    "#,
];

fn migrate(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    // One migration at a time across every coordinator (the key is
    // arbitrary and Cutover's own).
    tx.execute("SELECT pg_advisory_xact_lock(7212903311)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cutover_schema (version BIGINT NOT NULL)")?;
    let done: Option<i64> = tx
        .query_opt("SELECT version FROM cutover_schema", &[])?
        .map(|r| r.get(0));
    let done = match done {
        Some(v) => v as usize,
        None => {
            tx.execute("INSERT INTO cutover_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(m)?;
        tx.execute(
            "UPDATE cutover_schema SET version = $1",
            &[&((i + 1) as i64)],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_a_missing_database_and_a_remote_database_without_tls_are_refused() {
        let e = PgTarget::new("postgres://cutover:secret@127.0.0.1/cutover", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("store_password_file"), "{e}");
        assert!(!e.contains("secret@"), "the password is not repeated: {e}");
        let e = PgTarget::new("postgres://cutover@127.0.0.1", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no database"), "{e}");
        let e = PgTarget::new("postgres://cutover@db.example:5432/cutover", None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("store_ca_file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("pw");
        std::fs::write(&empty, "\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PgTarget::new("postgres://cutover@127.0.0.1/cutover", Some(&empty), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("readable by others (mode 644)"), "{e}");
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = PgTarget::new("postgres://cutover@127.0.0.1/cutover", Some(&empty), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
        std::fs::write(&empty, "s3cret\n").unwrap();
        let t = PgTarget::new("postgres://cutover@127.0.0.1/cutover", Some(&empty), None).unwrap();
        assert!(!format!("{t:?} {t}").contains("s3cret"));
    }
}
