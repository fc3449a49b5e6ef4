//! Rollout events for the people and tools that want them: each
//! deployment's start, its waits for an operator (a promote, an
//! approval), its pauses and its end, POSTed to the configured webhooks
//! (`[notify]` in coordinator.toml) as JSON or as a chat message, for the
//! events, services and environments each asks for, signed when it has a
//! key. Off the rollout's path: events queue for a task of their own,
//! deliveries are bounded by a timeout and tried three times, and a full
//! queue drops events (logged) rather than slow a rollout down. A
//! webhook's URL may be its credential (chat services): only its host is
//! ever logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::App;
use crate::config::{HookFormat, Notify};

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    /// Waits for an operator: a canary step's promote, or an approval.
    Waiting,
    Paused,
    /// Ended: succeeded, failed, rolled back or aborted (read from the
    /// deployment when delivered).
    Finished,
}

/// Checks a webhook URL: http(s), with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    Ok(())
}

/// A webhook: where to POST, what it wants, and how to name it in logs.
#[derive(Clone)]
struct Target {
    url: reqwest::Url,
    label: String,
    format: HookFormat,
    events: Vec<String>,
    services: Vec<String>,
    environments: Vec<String>,
    key: Option<Arc<ring::hmac::Key>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a token.
        f.write_str(&self.label)
    }
}

impl Target {
    fn new(url: reqwest::Url) -> Self {
        Self {
            label: format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
            url,
            format: HookFormat::Cutover,
            events: Vec::new(),
            services: Vec::new(),
            environments: Vec::new(),
            key: None,
        }
    }

    /// Whether this webhook wants `event` (a short name) of `service` in
    /// `environment`.
    fn wants(&self, event: &str, service: &str, environment: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && (self.environments.is_empty() || self.environments.iter().any(|e| e == environment))
    }
}

/// Why the webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {path}: {why}")]
    Bad {
        key: String,
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
    /// Per running deployment: (waiting for an operator, paused) as last
    /// stored, so that each begins one event.
    seen: std::sync::Mutex<std::collections::HashMap<String, (bool, bool)>>,
}

/// Events waiting for delivery, at most.
const QUEUE: usize = 1024;

fn read_url(key: &str, path: &std::path::Path) -> Result<reqwest::Url, NotifyError> {
    let text = cutover_common::fsutil::read_secret(path).map_err(|source| NotifyError::Read {
        key: key.into(),
        path: path.into(),
        source,
    })?;
    let url = String::from_utf8_lossy(&text).trim().to_string();
    check_url(&url).map_err(|why| NotifyError::Bad {
        key: key.into(),
        path: path.into(),
        why,
    })?;
    reqwest::Url::parse(&url).map_err(|e| NotifyError::Bad {
        key: key.into(),
        path: path.into(),
        why: e.to_string(),
    })
}

/// The targets of `cfg`: its URLs, the URLs in its files, and its hooks.
fn targets(cfg: &Notify) -> Result<Vec<Target>, NotifyError> {
    let mut out: Vec<Target> = cfg
        .webhooks
        .iter()
        .filter_map(|u| reqwest::Url::parse(u).ok())
        .map(Target::new)
        .collect();
    for path in &cfg.webhook_files {
        out.push(Target::new(read_url("notify.webhook_files", path)?));
    }
    for (i, h) in cfg.hooks.iter().enumerate() {
        let url = match (&h.url, &h.url_file) {
            (Some(u), _) => reqwest::Url::parse(u).map_err(|e| NotifyError::Bad {
                key: format!("notify.hooks[{i}].url"),
                path: Default::default(),
                why: e.to_string(),
            })?,
            (None, Some(p)) => read_url(&format!("notify.hooks[{i}].url_file"), p)?,
            (None, None) => continue,
        };
        let key = match &h.secret_file {
            None => None,
            Some(p) => {
                let k =
                    cutover_common::fsutil::read_secret(p).map_err(|source| NotifyError::Read {
                        key: format!("notify.hooks[{i}].secret_file"),
                        path: p.clone(),
                        source,
                    })?;
                let k: Vec<u8> = String::from_utf8_lossy(&k).trim().as_bytes().to_vec();
                if k.len() < 16 {
                    return Err(NotifyError::Bad {
                        key: format!("notify.hooks[{i}].secret_file"),
                        path: p.clone(),
                        why: "a signing key of at least 16 characters is expected (e.g. `openssl rand -hex 32`)".into(),
                    });
                }
                Some(Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k)))
            }
        };
        out.push(Target {
            format: h.format,
            events: h.events.clone(),
            services: h.services.clone(),
            environments: h.environments.clone(),
            key,
            ..Target::new(url)
        });
    }
    Ok(out)
}

impl Notifier {
    /// Starts the delivery task for `cfg`'s webhooks (none: nothing runs).
    pub fn start(app: &Arc<App>) -> Result<Self, NotifyError> {
        let targets = targets(&app.cfg.notify)?;
        if targets.is_empty() {
            return Ok(Notifier::default());
        }
        let timeout = app.cfg.notify.timeout;
        let client =
            cutover_common::http::HttpClient::build(|| reqwest::Client::builder().timeout(timeout))
                .map_err(|e| NotifyError::Client(e.to_string()))?;
        for t in &targets {
            if let Some(why) = client.refusal(t.url.as_str()) {
                tracing::error!(webhook = ?t, "this webhook's notifications will fail: {why}");
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(Arc::downgrade(app), client, targets, rx));
        Ok(Notifier {
            tx: Some(tx),
            seen: Default::default(),
        })
    }

    /// Deployment `id` was stored waiting for an operator or not, paused
    /// or not: a wait or a pause that begins is an event.
    pub fn observe(&self, id: &str, waiting: bool, paused: bool) {
        if self.tx.is_none() {
            return;
        }
        let before = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (waiting, paused))
            .unwrap_or((false, false));
        if waiting && !before.0 {
            self.send(Event::Waiting, id);
        }
        if paused && !before.1 {
            self.send(Event::Paused, id);
        }
    }

    /// Something happened to deployment `id`.
    pub fn send(&self, event: Event, id: &str) {
        let Some(tx) = &self.tx else { return };
        if event == Event::Finished {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        if tx.try_send((event, id.to_string())).is_err() {
            tracing::warn!(deployment = id, event = ?event, "notification queue full: event dropped");
        }
    }
}

/// The event's short name (`succeeded` ...) and its body in both formats:
/// the event and the deployment, as `cutover status -o json` shows it
/// without its progress (docs/cli-json.md); or a chat line.
struct Message {
    event: String,
    service: String,
    environment: String,
    json: serde_json::Value,
    text: String,
}

async fn message(app: &App, event: Event, id: &str) -> Option<Message> {
    let key = id.to_string();
    let d = app
        .store
        .call(move |c| crate::store::get_deployment(c, &key))
        .await
        .ok()??;
    let info = crate::grpc::deploy::info(&d, None);
    let dep = crate::cli::json::Deployment::of(&info, info.status.as_ref(), false);
    let short = match event {
        Event::Started => "started".to_string(),
        Event::Waiting => "waiting".into(),
        Event::Paused => "paused".into(),
        Event::Finished => dep.phase.clone(),
    };
    let what = match event {
        Event::Started => format!("started by {}", dep.created_by),
        Event::Waiting => format!(
            "waits for an operator: `cutover promote {}` (or `cutover approve {}` when it asks for approval)",
            dep.id, dep.id
        ),
        Event::Paused => format!("paused (`cutover resume {}` goes on)", dep.id),
        Event::Finished => match &dep.reason {
            Some(r) => format!("{}: {r}", dep.phase.replace('_', " ")),
            None => dep.phase.replace('_', " "),
        },
    };
    let env = dep.environment.clone().unwrap_or_default();
    let text = format!(
        "cutover: {} {}{}: deployment {} {what}",
        dep.service,
        dep.version,
        if env.is_empty() {
            String::new()
        } else {
            format!(" ({env})")
        },
        dep.id
    );
    Some(Message {
        // The end is one event, `deployment.finished`, its outcome in
        // the deployment's phase (as since notifications began).
        json: serde_json::json!({
            "event": if event == Event::Finished {
                "deployment.finished".to_string()
            } else {
                format!("deployment.{short}")
            },
            "deployment": dep,
        }),
        event: short,
        service: d.service.clone(),
        environment: env,
        text,
    })
}

/// `X-Cutover-Signature`'s value for `body` sent at `timestamp`.
fn signature(key: &ring::hmac::Key, timestamp: i64, body: &str) -> String {
    let tag = ring::hmac::sign(key, format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(tag.as_ref()))
}

async fn deliver(
    app: std::sync::Weak<App>,
    client: cutover_common::http::HttpClient,
    targets: Vec<Target>,
    mut rx: mpsc::Receiver<(Event, String)>,
) {
    // One queue and task per hook: a hook that is down or slow (its
    // retries take up to three timeouts and 4 s) delays only its own
    // messages, which stay in order.
    let hooks: Vec<(Arc<Target>, mpsc::Sender<Arc<Message>>)> = targets
        .into_iter()
        .map(|t| {
            let t = Arc::new(t);
            let (tx, hook_rx) = mpsc::channel(QUEUE);
            tokio::spawn(post_each(client.clone(), t.clone(), hook_rx));
            (t, tx)
        })
        .collect();
    while let Some((event, id)) = rx.recv().await {
        let Some(app) = app.upgrade() else { return };
        let Some(m) = message(&app, event, &id).await else {
            tracing::warn!(deployment = %id, "notification: the deployment is not in the store");
            continue;
        };
        drop(app);
        let m = Arc::new(m);
        for (t, tx) in hooks
            .iter()
            .filter(|(t, _)| t.wants(&m.event, &m.service, &m.environment))
        {
            if tx.try_send(m.clone()).is_err() {
                tracing::warn!(webhook = ?t, deployment = %id, "notification dropped: this webhook is {QUEUE} messages behind");
            }
        }
    }
}

/// Sends one hook's messages in order, each tried three times, 1 s then
/// 3 s apart.
async fn post_each(
    client: cutover_common::http::HttpClient,
    t: Arc<Target>,
    mut rx: mpsc::Receiver<Arc<Message>>,
) {
    while let Some(m) = rx.recv().await {
        let id = m.json["deployment"]["id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Some(why) = client.refusal(t.url.as_str()) {
            tracing::warn!(webhook = ?t, deployment = %id, "notification not sent: {why}");
            continue;
        }
        let body = match t.format {
            HookFormat::Cutover => m.json.to_string(),
            HookFormat::Slack => serde_json::json!({ "text": m.text }).to_string(),
        };
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=3 {
            let mut post = client
                .client
                .post(t.url.clone())
                .header("content-type", "application/json")
                .header("user-agent", concat!("cutover/", env!("CARGO_PKG_VERSION")));
            if let Some(key) = &t.key {
                let ts = cutover_common::time::now_ms() / 1000;
                post = post
                    .header("x-cutover-timestamp", ts.to_string())
                    .header("x-cutover-signature", signature(key, ts, &body));
            }
            let sent = post.body(body.clone()).send().await;
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
            hooks: Vec::new(),
        })
        .unwrap();
        assert_eq!(t.len(), 2);
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("https://hooks.example"), "{shown}");
    }

    #[test]
    fn hooks_take_the_events_services_and_environments_they_ask_for_and_sign_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("hook.key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let t = targets(&Notify {
            hooks: vec![crate::config::NotifyHook {
                url: Some("https://chat.example/hook".into()),
                format: HookFormat::Slack,
                events: vec!["rolled_back".into(), "failed".into()],
                environments: vec!["production".into()],
                secret_file: Some(key.clone()),
                ..Default::default()
            }],
            ..Notify::default()
        })
        .unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0].wants("rolled_back", "web", "production"));
        assert!(!t[0].wants("succeeded", "web", "production"));
        assert!(!t[0].wants("rolled_back", "web", "staging"));
        // The signature a receiver checks: HMAC-SHA256 of "TIMESTAMP.BODY".
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let sig = signature(&k, 1700000000, "{}");
        let want = ring::hmac::sign(&k, b"1700000000.{}");
        assert_eq!(sig, format!("sha256={}", hex::encode(want.as_ref())));
        // A short key is refused, naming the key.
        std::fs::write(&key, "short\n").unwrap();
        let e = targets(&Notify {
            hooks: vec![crate::config::NotifyHook {
                url: Some("https://chat.example/hook".into()),
                secret_file: Some(key),
                ..Default::default()
            }],
            ..Notify::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("notify.hooks[0].secret_file") && e.contains("16"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_wait_for_an_operator_and_a_pause_are_each_one_event_when_they_begin() {
        let (tx, mut rx) = mpsc::channel(16);
        let n = Notifier {
            tx: Some(tx),
            seen: Default::default(),
        };
        // (waiting, paused) as each state of d1 is stored.
        for (w, p) in [
            (false, false),
            (true, false),
            (true, false),
            (true, true),
            (false, true),
            (false, false),
            (true, false),
        ] {
            n.observe("d1", w, p);
        }
        n.send(Event::Finished, "d1");
        // After its end, a deployment id starts afresh (not that ids come
        // back, but nothing is kept for it).
        n.observe("d1", true, false);
        let mut got = Vec::new();
        while let Ok((e, id)) = rx.try_recv() {
            got.push(format!("{e:?} {id}"));
        }
        assert_eq!(
            got,
            [
                "Waiting d1",
                "Paused d1",
                "Waiting d1",
                "Finished d1",
                "Waiting d1"
            ]
        );
    }
}
