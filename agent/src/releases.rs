//! Releases of one service on disk, and staging new ones:
//!
//! ```text
//! services/<service>/
//!   downloads/<sha256>.artifact     fetched artifacts (and .partial while fetching)
//!   staging/<release-id>/           unpacking happens here
//!   releases/<release-id>/          unpacked artifact, never modified after staging
//!   releases/<release-id>.json      completion marker with the service spec, written last
//!   current -> releases/<id>        switched with an atomic rename(2)
//!   previous -> releases/<id>
//!   state.json                      see `state`
//! ```
//!
//! A release counts only when its marker exists; anything else under
//! `releases/` or `staging/` is leftover from a crash and is removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_common::fsutil;
use cutover_common::service::ServiceSpec;
use serde::{Deserialize, Serialize};

use crate::fetch::{self, Artifact, FetchError};
use crate::unpack::{self, Limits, UnpackError};

/// Why staging failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(
        "release id `{0}` is invalid: expected 1-100 characters of a-z, A-Z, 0-9, `.`, `_`, `-`"
    )]
    BadId(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("unpacking the artifact: {0}")]
    Unpack(#[from] UnpackError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Waits before the 2nd, 3rd and 4th attempts to stage after a transient
/// failure: about 13 s in all, so a blip (an artifact server restarting, a
/// dropped connection) does not fail a host.
pub const STAGE_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(9),
];

impl StageError {
    pub fn is_retryable(&self) -> bool {
        self.failure().is_retryable()
    }

    /// The kind reported to the coordinator.
    pub fn failure(&self) -> cutover_common::failure::Failure {
        use cutover_common::failure::Failure;
        match self {
            StageError::BadId(_) => Failure::Invalid,
            StageError::Fetch(f) if f.is_retryable() => Failure::Unavailable,
            StageError::Fetch(_) | StageError::Unpack(_) => Failure::Artifact,
            StageError::Io { .. } => Failure::Internal,
        }
    }
}

/// What the completion marker records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseMeta {
    pub release_id: String,
    pub version: String,
    pub sha256: String,
    pub spec: ServiceSpec,
    pub staged_at_ms: i64,
}

/// The directory of one service.
#[derive(Debug, Clone)]
pub struct ServiceDir {
    pub root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.into(),
        source,
    }
}

/// Checks a release id.
pub fn check_id(id: &str) -> Result<(), StageError> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StageError::BadId(id.into()))
    }
}

impl ServiceDir {
    pub fn new(state_dir: &Path, service: &str) -> Self {
        Self {
            root: state_dir.join("services").join(service),
        }
    }

    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.root.join("releases").join(id)
    }

    fn marker(&self, id: &str) -> PathBuf {
        self.root.join("releases").join(format!("{id}.json"))
    }

    fn manifest_file(&self, id: &str) -> PathBuf {
        self.root.join("releases").join(format!("{id}.manifest"))
    }

    /// What the release directory held when it was staged.
    pub fn manifest(&self, id: &str) -> Option<crate::drift::Manifest> {
        serde_json::from_slice(&fs::read(self.manifest_file(id)).ok()?).ok()
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The metadata of a complete release.
    pub fn meta(&self, id: &str) -> Option<ReleaseMeta> {
        let text = fs::read(self.marker(id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether `id` is staged and complete.
    pub fn is_staged(&self, id: &str) -> bool {
        self.meta(id).is_some() && self.release_dir(id).is_dir()
    }

    /// Complete releases, oldest first.
    pub fn releases(&self) -> Vec<ReleaseMeta> {
        let mut out: Vec<ReleaseMeta> = fs::read_dir(self.root.join("releases"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let id = name.strip_suffix(".json")?;
                self.meta(id).filter(|_| self.release_dir(id).is_dir())
            })
            .collect();
        out.sort_by_key(|m| m.staged_at_ms);
        out
    }

    /// `stage`, tried again after a transient failure (a network error, an
    /// HTTP 5xx: `StageError::is_retryable`) once per entry of `delays`,
    /// waiting that long first; `on_retry(attempt, error, delay)` is told
    /// before each wait. A bad artifact (checksum, size, archive) fails at
    /// once. A download cut short resumes where it stopped.
    pub async fn stage_retrying(
        &self,
        id: &str,
        version: &str,
        artifact: &Artifact,
        spec: &ServiceSpec,
        delays: &[Duration],
        mut on_retry: impl FnMut(usize, &StageError, Duration),
    ) -> Result<ReleaseMeta, (StageError, usize)> {
        let mut attempt = 1;
        loop {
            match self.stage(id, version, artifact, spec).await {
                Err(e) if e.is_retryable() && attempt <= delays.len() => {
                    let delay = delays[attempt - 1];
                    on_retry(attempt, &e, delay);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err((e, attempt)),
                Ok(m) => return Ok(m),
            }
        }
    }

    /// Stages a release: fetch, verify, unpack into `staging/`, rename into
    /// `releases/`, write the marker last. Staging an already staged
    /// release is a no-op.
    pub async fn stage(
        &self,
        id: &str,
        version: &str,
        artifact: &Artifact,
        spec: &ServiceSpec,
    ) -> Result<ReleaseMeta, StageError> {
        check_id(id)?;
        if let Some(m) = self.meta(id)
            && self.release_dir(id).is_dir()
        {
            return Ok(m);
        }
        let sha = fetch::parse_sha256(&artifact.sha256)?;
        for d in ["downloads", "staging", "releases"] {
            let p = self.root.join(d);
            fsutil::create_dir_with_mode(&p, 0o755).map_err(io(&p))?;
        }
        let download = self.root.join("downloads").join(format!("{sha}.artifact"));
        if !download.exists() {
            fetch::fetch(artifact, &download).await?;
        }
        let staging = self.root.join("staging").join(id);
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(io(&staging))?;
        let limits = Limits {
            max_bytes: artifact.max_bytes.saturating_mul(8).max(64 << 20),
            max_entries: 100_000,
        };
        let (dl, st) = (download.clone(), staging.clone());
        let unpacked = tokio::task::spawn_blocking(move || {
            let reader = unpack::open(&dl).map_err(UnpackError::Corrupt)?;
            unpack::unpack(reader, &st, limits)
        })
        .await
        .map_err(|e| StageError::Io {
            path: staging.clone(),
            source: std::io::Error::other(e),
        })?;
        if let Err(e) = unpacked {
            let _ = fs::remove_dir_all(&staging);
            // A corrupt download must not be reused.
            let _ = fs::remove_file(&download);
            return Err(e.into());
        }
        let dest = self.release_dir(id);
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&staging, &dest).map_err(io(&dest))?;
        // What it holds, for drift checks: recorded before the marker, so
        // a complete release always has one.
        let d2 = dest.clone();
        let manifest = tokio::task::spawn_blocking(move || crate::drift::scan(&d2, true))
            .await
            .map_err(|e| StageError::Io {
                path: dest.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(io(&dest))?;
        let mf = self.manifest_file(id);
        let bytes = serde_json::to_vec(&manifest).expect("serializable");
        crate::sys::write_synced(&mf, &bytes, 0o644).map_err(io(&mf))?;
        let meta = ReleaseMeta {
            release_id: id.into(),
            version: version.into(),
            sha256: sha,
            spec: spec.clone(),
            staged_at_ms: cutover_common::time::now_ms(),
        };
        let marker = self.marker(id);
        let bytes = serde_json::to_vec_pretty(&meta).expect("serializable");
        crate::sys::write_synced(&marker, &bytes, 0o644).map_err(io(&marker))?;
        let _ = fs::remove_file(&download);
        Ok(meta)
    }

    /// The release a link (`current`, `previous`) points at.
    pub fn link(&self, name: &str) -> Option<String> {
        let target = fs::read_link(self.root.join(name)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Points `name` at release `id` with an atomic rename, or removes it.
    /// Not synced: the change is durable once this directory is, which the
    /// service's next state write does (`state.json` lives here too; see
    /// `Service::update_links`).
    pub fn set_link(&self, name: &str, id: Option<&str>) -> std::io::Result<()> {
        let link = self.root.join(name);
        match id {
            Some(id) => {
                let tmp = self.root.join(format!(".{name}.tmp"));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(Path::new("releases").join(id), &tmp)?;
                fs::rename(&tmp, &link)?;
            }
            None => {
                let _ = fs::remove_file(&link);
            }
        }
        Ok(())
    }

    /// Removes leftovers of interrupted staging, and drift manifests of
    /// releases no longer kept.
    pub fn clean_leftovers(&self) {
        let _ = fs::remove_dir_all(self.root.join("staging"));
        for e in fs::read_dir(self.root.join("releases"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() && !self.marker(&name).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
            if let Some(id) = name.strip_suffix(".manifest")
                && !self.release_dir(id).is_dir()
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Keeps the newest `keep` releases, never deleting those in `protect`.
    pub fn prune(&self, keep: usize, protect: &[&str]) -> Vec<String> {
        let all = self.releases();
        let excess = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for m in all.into_iter().take(excess) {
            if protect.contains(&m.release_id.as_str()) {
                continue;
            }
            let _ = fs::remove_file(self.marker(&m.release_id));
            let _ = fs::remove_dir_all(self.release_dir(&m.release_id));
            // Its drift manifest too: left behind, one per release ever
            // staged piled up (bench/soak.sh found 542 after 700
            // deployments), each as large as the release has files.
            let _ = fs::remove_file(self.manifest_file(&m.release_id));
            removed.push(m.release_id);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn spec() -> ServiceSpec {
        toml::from_str("service = \"web\"\n[run]\ncommand = [\"bin/app\"]\n").unwrap()
    }

    fn tarball(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> Artifact {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let path = dir.join(name);
        fs::write(&path, &bytes).unwrap();
        Artifact {
            url: format!("file://{}", path.display()),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            max_bytes: 1 << 20,
        }
    }

    /// An artifact server that answers 503 to its first `failures`
    /// requests, then serves `body`; counts the requests.
    fn flaky_server(
        body: Vec<u8>,
        failures: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let (mut buf, mut req) = ([0u8; 4096], Vec::new());
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let mut resp = if h.fetch_add(1, Ordering::SeqCst) < failures {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes()
                };
                if !resp.starts_with(b"HTTP/1.1 503") {
                    resp.extend_from_slice(&body);
                }
                let _ = c.write_all(&resp);
            }
        });
        (format!("http://{addr}/a.tar"), hits)
    }

    #[tokio::test]
    async fn a_transient_fetch_failure_is_tried_again_and_a_bad_artifact_is_not() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let sd = ServiceDir::new(dir.path(), "web");
        let file = tarball(dir.path(), "a.tar", &[("bin/app", b"x")]);
        let body = fs::read(dir.path().join("a.tar")).unwrap();
        let no_wait = [Duration::ZERO; 3];
        // Two 503s, then the artifact: staged on the third attempt.
        let (url, hits) = flaky_server(body.clone(), 2);
        let a = Artifact {
            url,
            ..file.clone()
        };
        let mut told = Vec::new();
        let m = sd
            .stage_retrying("r1", "1", &a, &spec(), &no_wait, |n, e, _| {
                told.push((n, e.to_string()))
            })
            .await
            .unwrap();
        assert_eq!(m.release_id, "r1");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(told.len(), 2, "{told:?}");
        assert!(told[0].1.contains("503"), "{told:?}");
        // Failing for good: four attempts, then the error.
        let (url, hits) = flaky_server(body.clone(), 100);
        let a = Artifact {
            url,
            ..file.clone()
        };
        let (e, attempts) = sd
            .stage_retrying("r2", "2", &a, &spec(), &no_wait, |_, _, _| {})
            .await
            .unwrap_err();
        assert_eq!((attempts, hits.load(Ordering::SeqCst)), (4, 4), "{e}");
        // Reported so that the rollout tries again later.
        assert_eq!(e.failure(), cutover_common::failure::Failure::Unavailable);
        // A wrong checksum is not a blip: one attempt.
        let (url, hits) = flaky_server(body, 0);
        let a = Artifact {
            url,
            sha256: "0".repeat(64),
            ..file
        };
        let (e, attempts) = sd
            .stage_retrying("r3", "3", &a, &spec(), &no_wait, |_, _, _| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert_eq!((attempts, hits.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(e.failure(), cutover_common::failure::Failure::Artifact);
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn staging_writes_the_release_then_its_marker_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let sd = ServiceDir::new(dir.path(), "web");
        let a = tarball(dir.path(), "a.tar", &[("bin/app", b"x")]);
        let m = sd.stage("r1", "1.0", &a, &spec()).await.unwrap();
        assert_eq!(m.version, "1.0");
        assert!(sd.is_staged("r1"));
        assert_eq!(
            fs::read(sd.release_dir("r1").join("bin/app")).unwrap(),
            b"x"
        );
        // Again: no-op, even though the artifact is gone.
        fs::remove_file(a.url.strip_prefix("file://").unwrap()).unwrap();
        sd.stage("r1", "1.0", &a, &spec()).await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_artifact_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sd = ServiceDir::new(dir.path(), "web");
        let good = tarball(dir.path(), "a.tar", &[("bin/app", b"x")]);
        sd.stage("r1", "1", &good, &spec()).await.unwrap();
        sd.set_link("current", Some("r1")).unwrap();
        let mut bad = tarball(dir.path(), "b.tar", &[("bin/app", b"y")]);
        bad.sha256 = "0".repeat(64);
        assert!(sd.stage("r2", "2", &bad, &spec()).await.is_err());
        assert!(!sd.release_dir("r2").exists());
        assert_eq!(sd.link("current").as_deref(), Some("r1"));
        assert_eq!(sd.releases().len(), 1);
    }

    #[tokio::test]
    async fn pruning_keeps_the_newest_and_never_current_or_previous() {
        let dir = tempfile::tempdir().unwrap();
        let sd = ServiceDir::new(dir.path(), "web");
        for i in 0..6 {
            let a = tarball(
                dir.path(),
                &format!("{i}.tar"),
                &[("f", format!("{i}").as_bytes())],
            );
            sd.stage(&format!("r{i}"), "v", &a, &spec()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let removed = sd.prune(3, &["r0"]);
        assert_eq!(removed, vec!["r1", "r2"]);
        let left: Vec<String> = sd.releases().into_iter().map(|m| m.release_id).collect();
        assert_eq!(left, vec!["r0", "r3", "r4", "r5"]);
        // Nothing of the removed ones is left in the releases directory:
        // a directory, a marker and a drift manifest for each kept one.
        let files = fs::read_dir(sd.root.join("releases")).unwrap().count();
        assert_eq!(files, 4 * 3);
        // A manifest whose release is gone (an older agent left it) goes
        // at the next start.
        fs::write(sd.manifest_file("r1"), b"{}").unwrap();
        sd.clean_leftovers();
        assert!(!sd.manifest_file("r1").exists());
        assert!(sd.manifest_file("r3").exists());
    }

    #[test]
    fn release_ids_cannot_escape_the_releases_directory() {
        assert!(check_id("1.4.2-9f2c").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id("a/b").is_err());
    }
}
