//! Rollout events for the people and tools that want them: each
//! deployment's start and end POSTed as JSON to the configured webhooks
//! (`[notify]` in coordinator.toml). Off the rollout's path: events queue
//! for a task of their own, deliveries are bounded by a timeout and tried
//! three times, and a full queue drops events (logged) rather than slow a
//! rollout down. A webhook's URL may be its credential (chat services):
//! only its host is ever logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::App;
use crate::config::Notify;

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Finished,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Started => "deployment.started",
            Event::Finished => "deployment.finished",
        }
    }
}

/// Checks a webhook URL: http(s), with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    Ok(())
}

/// A webhook: where to POST, and how to name it in logs.
#[derive(Clone)]
struct Target {
    url: reqwest::Url,
    label: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a token.
        f.write_str(&self.label)
    }
}

/// Why the webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.webhook_files: cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("notify.webhook_files: {path}: {why}")]
    Bad {
        path: std::path::PathBuf,
        why: String,
    },
    #[error("an HTTP client for the webhooks: {0}")]
    Client(String),
}

/// Queues events for the webhooks; a no-op without any.
#[derive(Debug, Default)]
pub struct Notifier {
    tx: Option<mpsc::Sender<(Event, String)>>,
}

/// Events waiting for delivery, at most.
const QUEUE: usize = 1024;

/// The targets of `cfg`: its URLs and the URLs in its files.
fn targets(cfg: &Notify) -> Result<Vec<Target>, NotifyError> {
    let mut urls: Vec<String> = cfg.webhooks.clone();
    for path in &cfg.webhook_files {
        let text =
            cutover_common::fsutil::read_secret(path).map_err(|source| NotifyError::Read {
                path: path.clone(),
                source,
            })?;
        let url = String::from_utf8_lossy(&text).trim().to_string();
        check_url(&url).map_err(|why| NotifyError::Bad {
            path: path.clone(),
            why,
        })?;
        urls.push(url);
    }
    Ok(urls
        .into_iter()
        .filter_map(|u| reqwest::Url::parse(&u).ok())
        .map(|url| Target {
            label: format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
            url,
        })
        .collect())
}

impl Notifier {
    /// Starts the delivery task for `cfg`'s webhooks (none: nothing runs).
    pub fn start(app: &Arc<App>) -> Result<Self, NotifyError> {
        let targets = targets(&app.cfg.notify)?;
        if targets.is_empty() {
            return Ok(Notifier::default());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(app.cfg.notify.timeout)
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(Arc::downgrade(app), client, targets, rx));
        Ok(Notifier { tx: Some(tx) })
    }

    /// Deployment `id` started or finished.
    pub fn send(&self, event: Event, id: &str) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send((event, id.to_string())).is_err() {
            tracing::warn!(
                deployment = id,
                event = event.name(),
                "notification queue full: event dropped"
            );
        }
    }
}

/// The body POSTed: the event and the deployment, as `cutover status -o
/// json` shows it without its progress (docs/cli-json.md).
async fn payload(app: &App, event: Event, id: &str) -> Option<serde_json::Value> {
    let key = id.to_string();
    let d = app
        .store
        .call(move |c| crate::store::get_deployment(c, &key))
        .await
        .ok()??;
    let info = crate::grpc::deploy::info(&d, None);
    let deployment = crate::cli::json::Deployment::of(&info, info.status.as_ref(), false);
    Some(serde_json::json!({
        "event": event.name(),
        "deployment": deployment,
    }))
}

async fn deliver(
    app: std::sync::Weak<App>,
    client: reqwest::Client,
    targets: Vec<Target>,
    mut rx: mpsc::Receiver<(Event, String)>,
) {
    while let Some((event, id)) = rx.recv().await {
        let Some(app) = app.upgrade() else { return };
        let Some(body) = payload(&app, event, &id).await else {
            tracing::warn!(deployment = %id, "notification: the deployment is not in the store");
            continue;
        };
        drop(app);
        for t in &targets {
            let mut delay = Duration::from_secs(1);
            for attempt in 1..=3 {
                let sent = client
                    .post(t.url.clone())
                    .header("content-type", "application/json")
                    .header("user-agent", concat!("cutover/", env!("CARGO_PKG_VERSION")))
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) if attempt == 3 => {
                        tracing::warn!(webhook = ?t, deployment = %id, status = %r.status(), "notification refused");
                    }
                    Err(e) if attempt == 3 => {
                        // reqwest's error names the URL: say only its kind.
                        let why = if e.is_timeout() {
                            "timed out"
                        } else if e.is_connect() {
                            "cannot connect"
                        } else {
                            "failed"
                        };
                        tracing::warn!(webhook = ?t, deployment = %id, "notification {why}");
                    }
                    _ => {
                        tokio::time::sleep(delay).await;
                        delay *= 3;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked_and_logged_by_host_only() {
        assert!(check_url("https://hooks.example/T0/B0/secret").is_ok());
        assert!(check_url("ftp://hooks.example/x").is_err());
        assert!(check_url("hooks.example/x").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("slack.url");
        std::fs::write(&f, "https://hooks.example/T0/B0/secret\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let t = targets(&Notify {
            webhooks: vec!["http://127.0.0.1:9/x".into()],
            webhook_files: vec![f],
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(t.len(), 2);
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("https://hooks.example"), "{shown}");
    }
}
