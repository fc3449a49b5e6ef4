//! `cutover backup` and `cutover restore`: the store and the PKI (the CA,
//! its key, the session-ticket keys, operators' files), together, as one
//! directory.
//!
//! A backup is taken while the coordinator runs: the store is copied with
//! SQLite's `VACUUM INTO`, a consistent snapshot read in one transaction
//! beside the running coordinator's writes. A restore needs the
//! coordinator stopped (it takes the state directory's lock) and checks
//! the backup before it replaces anything.

use std::path::{Path, PathBuf};

use crate::config::CoordinatorConfig;
use crate::server::{ServeError, StateLock};

/// What went wrong with a backup or restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the store is PostgreSQL ({url}): back it up with pg_dump and the pki directory with your file backups (docs/operator-guide.md, \"High availability\"); `cutover backup` and `restore` are for the SQLite store"
    )]
    Postgres { url: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not empty: back up into a new directory")]
    NotEmpty { path: PathBuf },
    #[error("the store at {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} is not a Cutover backup ({why}); nothing was changed")]
    NotABackup { path: PathBuf, why: String },
    #[error(
        "{path} already holds a store: pass --force to replace it with the backup (the current one is kept as {path}.before-restore)"
    )]
    WouldReplace { path: PathBuf },
    #[error(transparent)]
    Locked(#[from] ServeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.into(),
        source,
    }
}

/// What a backup holds.
#[derive(Debug)]
pub struct Summary {
    pub dir: PathBuf,
    pub deployments: i64,
    pub hosts: i64,
    pub pki_files: usize,
}

/// Copies the directory tree `from` into `to` (files keep their modes).
fn copy_tree(from: &Path, to: &Path) -> Result<usize, BackupError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(from)
        .map_err(io(from))?
        .permissions()
        .mode();
    cutover_common::fsutil::create_dir_with_mode(to, mode & 0o777).map_err(io(to))?;
    let mut n = 0;
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            n += copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
            n += 1;
        }
    }
    Ok(n)
}

fn counts(db: &Path) -> Result<(i64, i64), BackupError> {
    let err = |source| BackupError::Store {
        path: db.into(),
        source,
    };
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(err)?;
    if ok != "ok" {
        return Err(BackupError::NotABackup {
            path: db.into(),
            why: format!("integrity check: {ok}"),
        });
    }
    let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(err);
    Ok((
        n("SELECT COUNT(*) FROM deployments")?,
        n("SELECT COUNT(*) FROM hosts")?,
    ))
}

/// Writes a backup of `cfg`'s store and PKI into `to` (new or empty).
fn sqlite_only(cfg: &CoordinatorConfig) -> Result<(), BackupError> {
    match &cfg.store {
        Some(url) => Err(BackupError::Postgres { url: url.clone() }),
        None => Ok(()),
    }
}

pub fn backup(cfg: &CoordinatorConfig, to: &Path) -> Result<Summary, BackupError> {
    sqlite_only(cfg)?;
    if to.exists() && std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(BackupError::NotEmpty { path: to.into() });
    }
    cutover_common::fsutil::create_dir_with_mode(to, 0o700).map_err(io(to))?;
    let db = cfg.db_path();
    let out = to.join("cutover.db");
    let c = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BackupError::Store {
        path: db.clone(),
        source,
    })?;
    c.execute("VACUUM INTO ?1", [out.to_string_lossy()])
        .map_err(|source| BackupError::Store {
            path: db.clone(),
            source,
        })?;
    drop(c);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).map_err(io(&out))?;
    let pki_files = copy_tree(&cfg.pki_dir(), &to.join("pki"))?;
    let (deployments, hosts) = counts(&out)?;
    Ok(Summary {
        dir: to.into(),
        deployments,
        hosts,
        pki_files,
    })
}

/// Puts the backup in `from` in place of `cfg`'s store and PKI. The
/// coordinator must be stopped; an existing store needs `force` (it is
/// moved aside, not deleted).
pub fn restore(cfg: &CoordinatorConfig, from: &Path, force: bool) -> Result<Summary, BackupError> {
    sqlite_only(cfg)?;
    let (db, pki) = (from.join("cutover.db"), from.join("pki"));
    for (p, what) in [(&db, "no cutover.db"), (&pki, "no pki/ directory")] {
        if !p.exists() {
            return Err(BackupError::NotABackup {
                path: from.into(),
                why: what.into(),
            });
        }
    }
    if !pki.join(cutover_common::pki::CA_KEY).exists() {
        return Err(BackupError::NotABackup {
            path: from.into(),
            why: "no CA key in pki/".into(),
        });
    }
    // Checked before anything is touched.
    let (deployments, hosts) = counts(&db)?;
    crate::pki_setup::ensure_state_dir(cfg).map_err(|e| BackupError::Io {
        path: cfg.state_dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let _lock = StateLock::take(&cfg.state_dir)?;
    let target_db = cfg.db_path();
    let target_pki = cfg.pki_dir();
    if target_db.exists() || target_pki.exists() {
        if !force {
            return Err(BackupError::WouldReplace {
                path: cfg.state_dir.clone(),
            });
        }
        for p in [&target_db, &target_pki] {
            if p.exists() {
                let aside = PathBuf::from(format!("{}.before-restore", p.display()));
                let _ = std::fs::remove_dir_all(&aside);
                let _ = std::fs::remove_file(&aside);
                std::fs::rename(p, &aside).map_err(io(p))?;
            }
        }
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", target_db.display()));
        }
    }
    let pki_files = copy_tree(&pki, &target_pki)?;
    let tmp = target_db.with_extension("db.restoring");
    std::fs::copy(&db, &tmp).map_err(io(&db))?;
    std::fs::rename(&tmp, &target_db).map_err(io(&target_db))?;
    Ok(Summary {
        dir: cfg.state_dir.clone(),
        deployments,
        hosts,
        pki_files,
    })
}
