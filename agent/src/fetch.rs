//! Downloads an artifact to a local file: `file://` or `http(s)://`,
//! streamed, with a size limit, SHA-256 computed while streaming, and an
//! interrupted download resumed with a `Range` request.
//!
//! The file is written as `<dest>.partial` and renamed to `dest` only when
//! the whole artifact has arrived and its checksum matches.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("artifact URL `{url}` is not supported (expected file://, http:// or https://)")]
    BadUrl { url: String },
    #[error("artifact sha256 `{0}` is not 64 hex digits")]
    BadChecksum(String),
    #[error("checksum mismatch for {url}: expected sha256 {expected}, got {actual}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("artifact {url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("fetching {url} failed: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("cannot fetch {url}: {why}")]
    NoCaCertificates { url: String, why: String },
    #[error("fetching {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("reading or writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Network trouble is worth retrying; a bad artifact is not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FetchError::Http { .. })
            || matches!(self, FetchError::Status { status, .. } if *status >= 500)
    }
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub url: String,
    /// Lowercase hex.
    pub sha256: String,
    pub max_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.into(),
        source,
    }
}

/// Checks and normalizes a sha256 string.
pub fn parse_sha256(s: &str) -> Result<String, FetchError> {
    let s = s
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(s.trim())
        .to_ascii_lowercase();
    if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(FetchError::BadChecksum(s))
    }
}

/// Fetches `a` into `dest`. Returns the size. Resumes `dest.partial` when
/// the server supports ranges.
pub async fn fetch(a: &Artifact, dest: &Path) -> Result<u64, FetchError> {
    let expected = parse_sha256(&a.sha256)?;
    let partial = dest.with_extension("partial");
    if let Some(path) = a.url.strip_prefix("file://") {
        let (src, part, url, limit) = (
            PathBuf::from(path),
            partial.clone(),
            a.url.clone(),
            a.max_bytes,
        );
        let (size, actual) =
            tokio::task::spawn_blocking(move || copy_file(&src, &part, &url, limit))
                .await
                .map_err(|e| FetchError::Io {
                    path: partial.clone(),
                    source: io::Error::other(e),
                })??;
        return finish(a, &partial, dest, &expected, actual, size);
    }
    if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
        return Err(FetchError::BadUrl { url: a.url.clone() });
    }
    let (size, actual) = match download(a, &partial).await {
        // The server refused the range: the partial file is stale or
        // already complete. Start over once.
        Err(FetchError::Status { status: 416, .. }) => {
            let _ = fs::remove_file(&partial);
            download(a, &partial).await?
        }
        other => other?,
    };
    finish(a, &partial, dest, &expected, actual, size)
}

fn finish(
    a: &Artifact,
    partial: &Path,
    dest: &Path,
    expected: &str,
    actual: String,
    size: u64,
) -> Result<u64, FetchError> {
    if actual != expected {
        let _ = fs::remove_file(partial);
        return Err(FetchError::Mismatch {
            url: a.url.clone(),
            expected: expected.into(),
            actual,
        });
    }
    fs::rename(partial, dest).map_err(io_err(dest))?;
    Ok(size)
}

fn copy_file(
    src: &Path,
    partial: &Path,
    url: &str,
    limit: u64,
) -> Result<(u64, String), FetchError> {
    let mut input = File::open(src).map_err(io_err(src))?;
    let mut out = File::create(partial).map_err(io_err(partial))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_err(src))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            drop(out);
            let _ = fs::remove_file(partial);
            return Err(FetchError::TooLarge {
                url: url.into(),
                limit,
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(partial))?;
    }
    crate::sys::blocking(|| out.sync_all()).map_err(io_err(partial))?;
    Ok((total, hex::encode(hasher.finalize())))
}

fn client(url: &str) -> Result<reqwest::Client, FetchError> {
    let c = cutover_common::http::HttpClient::build(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
    })
    .map_err(|source| FetchError::Http {
        url: url.into(),
        source,
    })?;
    match c.refusal(url) {
        Some(why) => Err(FetchError::NoCaCertificates {
            url: url.into(),
            why,
        }),
        None => Ok(c.client),
    }
}

async fn download(a: &Artifact, partial: &Path) -> Result<(u64, String), FetchError> {
    let http = |source| FetchError::Http {
        url: a.url.clone(),
        source,
    };
    // Hash what an earlier attempt left, to resume after it.
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    if let Ok(mut f) = File::open(partial) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io_err(partial))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            have += n as u64;
        }
    }
    let mut req = client(&a.url)?.get(&a.url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(http)?;
    let status = resp.status().as_u16();
    let resumed = status == 206 && have > 0;
    if !resumed {
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: a.url.clone(),
                status,
            });
        }
        hasher = Sha256::new();
        have = 0;
    }
    if let Some(len) = resp.content_length()
        && have + len > a.max_bytes
    {
        return Err(FetchError::TooLarge {
            url: a.url.clone(),
            limit: a.max_bytes,
        });
    }
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(partial)
        .map_err(io_err(partial))?;
    let mut total = have;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        total += chunk.len() as u64;
        if total > a.max_bytes {
            drop(out);
            let _ = fs::remove_file(partial);
            return Err(FetchError::TooLarge {
                url: a.url.clone(),
                limit: a.max_bytes,
            });
        }
        hasher.update(&chunk);
        out.write_all(&chunk).map_err(io_err(partial))?;
    }
    crate::sys::blocking(|| out.sync_all()).map_err(io_err(partial))?;
    Ok((total, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[tokio::test]
    async fn a_file_url_is_copied_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.tar");
        fs::write(&src, b"hello").unwrap();
        let a = Artifact {
            url: format!("file://{}", src.display()),
            sha256: sha(b"hello"),
            max_bytes: 100,
        };
        let dest = dir.path().join("out.tar");
        assert_eq!(fetch(&a, &dest).await.unwrap(), 5);
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_checksum_mismatch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.tar");
        fs::write(&src, b"hello").unwrap();
        let a = Artifact {
            url: format!("file://{}", src.display()),
            sha256: sha(b"other"),
            max_bytes: 100,
        };
        let dest = dir.path().join("out.tar");
        let e = fetch(&a, &dest).await.unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(!dest.exists() && !dest.with_extension("partial").exists());
    }

    #[tokio::test]
    async fn an_artifact_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.tar");
        fs::write(&src, vec![0u8; 1000]).unwrap();
        let a = Artifact {
            url: format!("file://{}", src.display()),
            sha256: sha(&[0u8; 1000]),
            max_bytes: 999,
        };
        assert!(matches!(
            fetch(&a, &dir.path().join("o")).await,
            Err(FetchError::TooLarge { .. })
        ));
    }

    #[test]
    fn checksums_are_normalized_and_checked() {
        assert_eq!(
            parse_sha256(&format!("sha256:{}", "AB".repeat(32))).unwrap(),
            "ab".repeat(32)
        );
        assert!(parse_sha256("abc").is_err());
    }
}
