//! How the `cutover` command reaches a coordinator: which URL, CA and
//! operator certificate to use (flags > `CUTOVER_*` variables > CLI config
//! file), and the mTLS channel built from them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cutover_common::pki::{self, TlsIdentity};
use cutover_common::tls::{self, ChannelOptions};
use cutover_proto::v1::control_service_client::ControlServiceClient;
use serde::Deserialize;
use tonic::transport::Channel;

/// Connection settings as given on the command line or in the environment.
/// Where the connection options show in `--help`: apart from each
/// command's own (local commands such as `validate`, `serve` and `demo`
/// ignore them).
const CONNECTION: &str = "Connection (commands that talk to a coordinator)";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// Coordinator URL, e.g. https://coordinator:7443; several
    /// coordinators sharing a store as a comma-separated list (the leader
    /// is found and followed).
    #[arg(long, env = "CUTOVER_COORDINATOR", global = true, help_heading = CONNECTION)]
    pub coordinator: Option<String>,
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "CUTOVER_CA", global = true, help_heading = CONNECTION)]
    pub ca: Option<PathBuf>,
    /// Operator certificate and key bundle (PEM, mode 0600).
    #[arg(long, env = "CUTOVER_IDENTITY", global = true, help_heading = CONNECTION)]
    pub identity: Option<PathBuf>,
    /// CLI config file with `coordinator`, `ca` and `identity`
    /// (default ~/.config/cutover/cli.toml).
    #[arg(long, env = "CUTOVER_CLI_CONFIG", global = true, help_heading = CONNECTION)]
    pub cli_config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CliFile {
    coordinator: Option<String>,
    ca: Option<PathBuf>,
    identity: Option<PathBuf>,
}

/// Why the CLI could not reach the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: {what}")]
    ConfigFile { path: PathBuf, what: String },
    #[error(
        "no {what} given: pass --{flag}, set CUTOVER_{env}, or set `{flag}` in the CLI config (see `cutover ca issue-operator`)"
    )]
    Missing {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error(
        "operator certificate {path} expired at {at}; ask an admin for a new one (`cutover ca issue-operator`)"
    )]
    Expired { path: PathBuf, at: String },
    #[error("operator certificate {path} is not usable with the CA in {ca}: {reason}")]
    Rejected {
        path: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Standby(String),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The control client type.
pub type Control = ControlServiceClient<Channel>;

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub url: String,
    pub ca: PathBuf,
    pub identity: PathBuf,
}

fn default_cli_config() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/cutover/cli.toml"))
}

impl ClientArgs {
    /// Merges flags, environment and the CLI config file.
    pub fn resolve(&self) -> Result<Resolved, ClientError> {
        let (path, explicit) = match &self.cli_config {
            Some(p) => (Some(p.clone()), true),
            None => (default_cli_config(), false),
        };
        let file = match path {
            Some(p) if p.exists() || explicit => {
                let text = std::fs::read_to_string(&p).map_err(|e| ClientError::ConfigFile {
                    path: p.clone(),
                    what: e.to_string(),
                })?;
                toml::from_str::<CliFile>(&text).map_err(|e| ClientError::ConfigFile {
                    path: p.clone(),
                    what: e.to_string(),
                })?
            }
            _ => CliFile::default(),
        };
        let url = self
            .coordinator
            .clone()
            .or(file.coordinator)
            .ok_or(ClientError::Missing {
                what: "coordinator URL",
                flag: "coordinator",
                env: "COORDINATOR",
            })?;
        let ca = self.ca.clone().or(file.ca).ok_or(ClientError::Missing {
            what: "CA certificate",
            flag: "ca",
            env: "CA",
        })?;
        let identity = self
            .identity
            .clone()
            .or(file.identity)
            .ok_or(ClientError::Missing {
                what: "operator identity",
                flag: "identity",
                env: "IDENTITY",
            })?;
        Ok(Resolved { url, ca, identity })
    }

    /// Connects to the coordinator's control service with mTLS.
    pub async fn connect(&self) -> Result<ControlServiceClient<Channel>, ClientError> {
        let r = self.resolve()?;
        connect(&r).await
    }
}

/// The settings of this process's last connection, for [`reconnect`].
static LAST: std::sync::Mutex<Option<Resolved>> = std::sync::Mutex::new(None);

/// Connects again with the settings of this process's last [`connect`]:
/// for a watch that lost its coordinator (another may lead now). None when
/// nothing was connected or no coordinator answers.
pub async fn reconnect() -> Option<Control> {
    let r = LAST.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    connect(&r).await.ok()
}

/// Connects with resolved settings, checking the operator certificate's
/// expiry first so the error says so plainly.
pub async fn connect(r: &Resolved) -> Result<ControlServiceClient<Channel>, ClientError> {
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
    let ca = pki::load_certs(&r.ca)?;
    let id = TlsIdentity::load_bundle(&r.identity)?;
    let info = id.info()?;
    if info.not_after <= SystemTime::now() {
        return Err(ClientError::Expired {
            path: r.identity.clone(),
            at: humantime::format_rfc3339_seconds(info.not_after).to_string(),
        });
    }
    tls::check_client_cert(&ca, &id).map_err(|e| ClientError::Rejected {
        path: r.identity.clone(),
        ca: r.ca.clone(),
        reason: e.to_string(),
    })?;
    let cfg = std::sync::Arc::new(tls::client_config(&ca, Some(&id))?);
    // An operator waits for an answer: a coordinator that has not finished
    // the handshake in 10 s is reported rather than waited for.
    let opts = ChannelOptions {
        handshake_timeout: std::time::Duration::from_secs(10),
        ..ChannelOptions::default()
    };
    let urls: Vec<&str> = r
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let several = urls.len() > 1;
    let mut last: Option<ClientError> = None;
    for url in urls {
        let client = match tls::connect(url, cfg.clone(), opts).await {
            Ok(ch) => ControlServiceClient::new(ch).max_decoding_message_size(64 << 20),
            Err(e) => {
                last = Some(e.into());
                continue;
            }
        };
        match follow_leader(client, &cfg, opts).await {
            Ok(c) => return Ok(c),
            // A standby that names no leader (an election under way):
            // the next address, if any.
            Err(e) if several => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(ClientError::Missing {
        what: "coordinator URL",
        flag: "coordinator",
        env: "COORDINATOR",
    }))
}

/// Several coordinators share a PostgreSQL store and only the leader
/// answers: asks the one reached who the caller is (cheap, any role); a
/// standby answers with the leader's URL, which is reached instead.
async fn follow_leader(
    mut client: Control,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    opts: ChannelOptions,
) -> Result<Control, ClientError> {
    let Err(status) = client.who_am_i(cutover_proto::v1::WhoAmIRequest {}).await else {
        return Ok(client);
    };
    let standby = status.code() == tonic::Code::Unavailable && status.message().contains("standby");
    if !standby {
        // Whatever else it is, the command's own call reports it.
        return Ok(client);
    }
    match status
        .metadata()
        .get(crate::standby::LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(leader) => {
            let ch = tls::connect(leader, cfg.clone(), opts).await?;
            Ok(ControlServiceClient::new(ch).max_decoding_message_size(64 << 20))
        }
        None => Err(ClientError::Standby(status.message().to_string())),
    }
}
