//! The `cutover` command line: argument parsing and one function per
//! command. Commands that talk to a running coordinator go through
//! [`crate::client`]; `serve`, `ca` and `config check` work on local files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cutover_common::labels;
use cutover_proto::v1 as pb;
use serde::Serialize;

use crate::client::ClientArgs;
use crate::config::CoordinatorConfig;
use crate::grpc::auth::Role;
use crate::output::{self, Format};
use crate::pki_setup;

/// Cutover: boring deploys for fleets of Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Coordinator config file (default /etc/cutover/coordinator.toml if present).
    #[arg(long, short = 'c', env = "CUTOVER_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> Result<CoordinatorConfig> {
        Ok(CoordinatorConfig::load(self.config.as_deref())?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator daemon.
    Serve(ConfigArg),
    /// Check the coordinator config and exit (for ExecStartPre=).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Manage the cluster CA and operator certificates (run on the coordinator host).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Manage join tokens for new hosts.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// List the fleet, or remove a host.
    Hosts {
        #[command(subcommand)]
        cmd: Option<HostsCmd>,
        /// Only hosts matching this label selector (e.g. role=web,zone!=b).
        #[arg(long, short = 'l', default_value = "")]
        selector: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show the coordinator's audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show which operator and role this CLI authenticates as.
    Whoami,
    /// Take a host out of its load balancers (maintenance): fail its
    /// readiness endpoint, run pre_drain hooks, wait for connections to go.
    Drain {
        host: String,
        /// Only these services (default: every service on the host).
        #[arg(long = "service", short = 's')]
        services: Vec<String>,
        /// Also stop the services once drained.
        #[arg(long)]
        stop: bool,
    },
    /// Put a drained host back (starting services the drain stopped).
    Undrain {
        host: String,
        #[arg(long = "service", short = 's')]
        services: Vec<String>,
    },
    /// Check a deployment spec (locally; no coordinator needed).
    Validate { file: PathBuf },
    /// Show the batches a spec would make against today's fleet.
    Plan {
        file: PathBuf,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Deploy a spec. Exit codes with --watch: 0 succeeded, 2 failed,
    /// 3 rolled back, 4 aborted (1: could not start).
    Deploy {
        file: PathBuf,
        /// The version being deployed (or `version` in the spec).
        #[arg(long)]
        version: Option<String>,
        /// Artifact URL (or `[artifact]` in the spec).
        #[arg(long, requires = "sha256")]
        artifact: Option<String>,
        #[arg(long, requires = "artifact")]
        sha256: Option<String>,
        /// When the change was committed (RFC 3339, any offset, e.g. from
        /// `git log -1 --format=%cI`), for lead-time stats.
        #[arg(long)]
        commit_time: Option<String>,
        /// The promotion gate: refuse unless this version (same artifact)
        /// succeeded in ENV first. Repeatable; adds to the spec's
        /// `targets.requires_success_in`.
        #[arg(long = "require-success-in", value_name = "ENV")]
        require_success_in: Vec<String>,
        /// Follow the rollout until it ends; the exit code tells how.
        #[arg(long)]
        watch: bool,
    },
    /// Hosts whose services differ from what Cutover deployed, and why
    /// (exit 0 either way; `-o json` for scripts).
    Drift {
        /// Only hosts matching this label selector.
        #[arg(long, short = 'l', default_value = "")]
        selector: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Delivery performance (DORA): deployment frequency, lead time for
    /// changes, change failure rate, time to restore.
    Stats {
        /// One service (default: all).
        #[arg(long)]
        service: Option<String>,
        /// One environment (default: all).
        #[arg(long)]
        environment: Option<String>,
        /// The window, back from now.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// A deployment's state (default: the newest).
    Status {
        id: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Follow a deployment until it ends (same exit codes as deploy --watch).
    Watch { id: String },
    /// Deployments of a service, newest first.
    History {
        service: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Stop starting new batches of a deployment.
    Pause { id: String },
    /// Go on with a paused deployment.
    Resume { id: String },
    /// Stop a deployment and roll back the hosts it changed.
    Abort { id: String },
    /// Promote a canary step.
    Promote { id: String },
    /// Deploy an earlier successful version of a service again.
    Rollback {
        service: String,
        /// Default: the newest successful version before the current one.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        watch: bool,
    },
    /// Run a whole fleet on this machine: a coordinator, agents and a sample service.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Load and validate the config; print it with defaults filled in.
    Check(ConfigArg),
}

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create the cluster CA, the coordinator's certificate and an `admin` operator.
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// A name for this cluster, shown in the CA certificate.
        #[arg(long, default_value = "cutover")]
        cluster: String,
    },
    /// Print the CA fingerprint agents pin at enrollment.
    Fingerprint(ConfigArg),
    /// Issue an operator certificate and a CLI config for it.
    IssueOperator {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        name: String,
        /// admin | deployer | viewer
        #[arg(long)]
        role: Role,
        /// Certificate lifetime (default: operator_cert_ttl from the config).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Directory for NAME.pem and NAME.toml (default: PKI_DIR/operators).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Admin, Role::Deployer, Role::Viewer]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a join token and print it with the CA fingerprint.
    Create {
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How many hosts may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Labels bound to every host that enrolls with it (k=v,k2=v2).
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// Forget a host; its certificate stops working at its next connection.
    Remove { host: String },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(c) => serve(c.load()?).await,
        Command::Config {
            cmd: ConfigCmd::Check(c),
        } => {
            let cfg = c.load()?;
            println!(
                "{}",
                toml::to_string_pretty(&cfg).context("rendering config")?
            );
            eprintln!("config ok");
            Ok(())
        }
        Command::Ca { cmd } => ca(cmd),
        Command::Token { cmd } => token(&cli.client, cmd).await,
        Command::Hosts {
            cmd: Some(HostsCmd::Remove { host }),
            ..
        } => {
            let mut c = cli.client.connect().await?;
            c.remove_host(pb::RemoveHostRequest {
                host_id: host.clone(),
            })
            .await
            .map_err(status)?;
            println!("removed host {host}");
            Ok(())
        }
        Command::Hosts {
            cmd: None,
            selector,
            output,
        } => hosts(&cli.client, &selector, output).await,
        Command::Audit { limit, output } => audit(&cli.client, limit, output).await,
        Command::Whoami => {
            let mut c = cli.client.connect().await?;
            let r = c
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let until = cutover_common::time::from_unix_ms(r.certificate_not_after_ms);
            println!(
                "operator {} (role {}), certificate valid until {}",
                r.name,
                r.role,
                humantime::format_rfc3339_seconds(until)
            );
            Ok(())
        }
        Command::Drain {
            host,
            services,
            stop,
        } => drain(&cli.client, &host, services, Some(stop)).await,
        Command::Undrain { host, services } => drain(&cli.client, &host, services, None).await,
        Command::Validate { file } => {
            let spec = cutover_common::deploy::DeploySpec::load(&file)?;
            println!(
                "{}: ok (service {}, {:?} strategy, targets {})",
                file.display(),
                spec.service,
                spec.strategy.kind,
                spec.targets.selector
            );
            Ok(())
        }
        Command::Plan { file, output } => plan(&cli.client, &file, output).await,
        Command::Deploy {
            file,
            version,
            artifact,
            sha256,
            commit_time,
            require_success_in,
            watch,
        } => {
            deploy(
                &cli.client,
                &file,
                DeployOptions {
                    version,
                    artifact,
                    sha256,
                    commit_time,
                    require_success_in,
                    watch,
                },
            )
            .await
        }
        Command::Drift { selector, output } => drift(&cli.client, &selector, output).await,
        Command::Stats {
            service,
            environment,
            since,
            output,
        } => stats(&cli.client, service, environment, since, output).await,
        Command::Status { id, output } => {
            status_cmd(&cli.client, id.unwrap_or_default(), output).await
        }
        Command::Watch { id } => {
            let mut c = cli.client.connect().await?;
            follow(&mut c, &id).await
        }
        Command::History {
            service,
            limit,
            output,
        } => history(&cli.client, &service, limit, output).await,
        Command::Pause { id } => control(&cli.client, &id, "pause").await,
        Command::Resume { id } => control(&cli.client, &id, "resume").await,
        Command::Abort { id } => control(&cli.client, &id, "abort").await,
        Command::Promote { id } => control(&cli.client, &id, "promote").await,
        Command::Rollback { service, to, watch } => {
            let mut c = cli.client.connect().await?;
            let d = c
                .rollback_service(pb::RollbackServiceRequest {
                    service,
                    to_version: to.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if d.phase == "rolled_back" {
                // Blue/green: traffic went back to the old group at once.
                let note = rollout_of(&d).and_then(|r| r.notes.last().map(|n| n.message.clone()));
                println!("{}: {}", d.service, note.unwrap_or_default());
                return Ok(());
            }
            println!(
                "deployment {} rolls {} back to version {}",
                d.id, d.service, d.version
            );
            if watch {
                follow(&mut c, &d.id).await
            } else {
                Ok(())
            }
        }
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

/// How a followed deployment ended, as a process exit code.
#[derive(Debug)]
pub struct DeployOutcome {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for DeployOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeployOutcome {}

fn spec_request(file: &std::path::Path) -> Result<pb::SpecRequest> {
    // Check locally first: the same errors, without a round trip.
    cutover_common::deploy::DeploySpec::load(file)?;
    Ok(pb::SpecRequest {
        spec_toml: std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?,
        file_name: file.display().to_string(),
        ..Default::default()
    })
}

async fn plan(client: &ClientArgs, file: &std::path::Path, output: Format) -> Result<()> {
    let req = spec_request(file)?;
    let mut c = client.connect().await?;
    let p = c.plan_deployment(req).await.map_err(status)?.into_inner();
    let plan: crate::engine::Plan =
        serde_json::from_str(&p.plan_json).context("reading the plan")?;
    match output {
        Format::Json => print!("{}", output::json(&plan)),
        Format::Table => {
            let rows: Vec<Vec<String>> = plan
                .batches
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    let plan = &plan;
                    b.iter().map(move |h| {
                        vec![
                            format!("{}", i + 1),
                            h.clone(),
                            plan.from
                                .get(h)
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                })
                .collect();
            print!("{}", output::table(&["BATCH", "HOST", "RUNS NOW"], &rows));
            for (h, why) in &plan.skipped {
                println!("skipped {h}: {why}");
            }
            println!(
                "{} batch(es), {} host(s); rolls back after more than {} failed host(s)",
                plan.batches.len(),
                plan.batches.iter().map(Vec::len).sum::<usize>(),
                plan.max_failed
            );
        }
    }
    Ok(())
}

/// `cutover deploy` flags.
struct DeployOptions {
    version: Option<String>,
    artifact: Option<String>,
    sha256: Option<String>,
    commit_time: Option<String>,
    require_success_in: Vec<String>,
    watch: bool,
}

async fn deploy(client: &ClientArgs, file: &std::path::Path, o: DeployOptions) -> Result<()> {
    let DeployOptions {
        version,
        artifact,
        sha256,
        commit_time,
        require_success_in,
        watch,
    } = o;
    let mut spec = spec_request(file)?;
    spec.require_success_in = require_success_in;
    spec.version = version.unwrap_or_default();
    spec.artifact_url = artifact.unwrap_or_default();
    spec.artifact_sha256 = sha256.unwrap_or_default();
    let commit_time_ms = match commit_time {
        Some(t) => parse_commit_time(&t)
            .context("--commit-time: expected RFC 3339, e.g. 2026-11-22T10:00:00Z or git's %cI")?,
        None => 0,
    };
    let mut c = client.connect().await?;
    let d = c
        .submit_deployment(pb::SubmitDeploymentRequest {
            spec: Some(spec),
            commit_time_ms,
        })
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "deployment {} of {} version {} started",
        d.id, d.service, d.version
    );
    if watch {
        follow(&mut c, &d.id).await
    } else {
        Ok(())
    }
}

fn rollout_of(d: &pb::DeploymentInfo) -> Option<crate::engine::Rollout> {
    serde_json::from_str(&d.rollout_json).ok()
}

/// Prints a deployment's story as it happens; fails with the outcome's
/// exit code unless it succeeded.
pub async fn follow(c: &mut crate::client::Control, id: &str) -> Result<()> {
    follow_with(c, id, None).await
}

/// [`follow`], also showing `traffic()` (live request counts) every second.
pub async fn follow_with(
    c: &mut crate::client::Control,
    id: &str,
    traffic: Option<&(dyn Fn() -> String + Send + Sync)>,
) -> Result<()> {
    let mut stream = c
        .watch_deployment(pb::GetDeploymentRequest { id: id.into() })
        .await
        .map_err(status)?
        .into_inner();
    let mut printed = 0;
    let mut last: Option<pb::DeploymentInfo> = None;
    // On a terminal: a live bar of hosts on the new release under the
    // story; otherwise (CI logs) plain timestamped lines only.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} hosts on the new release [{bar:30}] {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut blocked = String::new();
    loop {
        let d = tokio::select! {
            m = stream.message() => match m.map_err(status)? {
                Some(d) => d,
                None => break,
            },
            _ = tick.tick(), if traffic.is_some() => {
                let t = traffic.map(|f| f()).unwrap_or_default();
                match &bar {
                    Some(b) => b.set_message(format!("{blocked} | {t}")),
                    None => println!("          clients: {t}"),
                }
                continue;
            }
        };
        if let Some(r) = rollout_of(&d) {
            for n in r.notes.iter().skip(printed) {
                let t =
                    humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(n.at_ms))
                        .to_string();
                let line = format!("{}  {}  {}", &t[11..19], d.id, n.message);
                match &bar {
                    Some(b) => b.println(line),
                    None => println!("{line}"),
                }
            }
            printed = r.notes.len();
            if let Some(b) = &bar {
                b.set_length(r.hosts.len() as u64);
                let done = r
                    .hosts
                    .values()
                    .filter(|p| matches!(p, crate::engine::HostPhase::Done { .. }))
                    .count();
                b.set_position(done as u64);
                blocked = d.blocked_on.clone();
                match traffic {
                    Some(f) => b.set_message(format!("{blocked} | {}", f())),
                    None => b.set_message(blocked.clone()),
                }
            }
        }
        last = Some(d);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let d = last.context("the coordinator sent nothing")?;
    let r = rollout_of(&d);
    let summary = r.as_ref().map(|r| r.summary()).unwrap_or_default();
    let (code, what) = match d.phase.as_str() {
        "succeeded" => (0, "succeeded"),
        "rolled_back" => (3, "rolled back"),
        "aborted" => (4, "aborted"),
        "failed" => (2, "failed"),
        _ => (2, "ended without a result"),
    };
    let reason = match r.map(|r| r.phase) {
        Some(crate::engine::Phase::RolledBack { reason })
        | Some(crate::engine::Phase::Aborted { reason })
        | Some(crate::engine::Phase::Failed { reason }) => {
            format!(": {reason}")
        }
        _ => String::new(),
    };
    let message = format!("deployment {} {what}{reason} ({summary})", d.id);
    if code == 0 {
        println!("{message}");
        Ok(())
    } else {
        Err(DeployOutcome { code, message }.into())
    }
}

async fn status_cmd(client: &ClientArgs, id: String, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    let d = c
        .get_deployment(pb::GetDeploymentRequest { id })
        .await
        .map_err(status)?
        .into_inner();
    let r = rollout_of(&d);
    match output {
        Format::Json => {
            let v = serde_json::json!({
                "id": d.id, "service": d.service, "version": d.version, "phase": d.phase,
                "created_by": d.created_by, "blocked_on": d.blocked_on, "rollout": r,
            });
            print!("{}", output::json(&v));
        }
        Format::Table => {
            println!(
                "deployment {}: {} version {} — {}",
                d.id, d.service, d.version, d.phase
            );
            if let Some(r) = &r {
                println!(
                    "release {}, {} batch(es), started by {}",
                    r.release_id,
                    r.batches.len(),
                    d.created_by
                );
                if !d.blocked_on.is_empty() {
                    println!("now: {}", d.blocked_on);
                }
                let rows: Vec<Vec<String>> = r
                    .hosts
                    .iter()
                    .map(|(h, p)| {
                        let batch = r
                            .batches
                            .iter()
                            .position(|b| b.contains(h))
                            .map(|b| (b + 1).to_string())
                            .unwrap_or_default();
                        let v = serde_json::to_value(p).unwrap_or_default();
                        let detail = v
                            .get("reason")
                            .and_then(|x| x.as_str())
                            .unwrap_or_default()
                            .to_string();
                        vec![
                            h.clone(),
                            batch,
                            v["state"].as_str().unwrap_or_default().to_string(),
                            detail,
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["HOST", "BATCH", "STATE", "DETAIL"], &rows)
                );
            }
        }
    }
    Ok(())
}

async fn history(client: &ClientArgs, service: &str, limit: u32, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    let list = c
        .list_deployments(pb::ListDeploymentsRequest {
            service: service.into(),
            limit,
        })
        .await
        .map_err(status)?
        .into_inner()
        .deployments;
    let fmt_ts = |ms: i64| {
        if ms == 0 {
            "-".to_string()
        } else {
            humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(ms)).to_string()
        }
    };
    match output {
        Format::Json => {
            let v: Vec<serde_json::Value> = list
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.id, "service": d.service, "version": d.version, "outcome": d.phase,
                        "environment": d.environment, "rollback_of": d.rollback_of,
                        "by": d.created_by, "started": fmt_ts(d.created_at_ms), "finished": fmt_ts(d.finished_at_ms),
                        "summary": rollout_of(d).map(|r| r.summary()),
                    })
                })
                .collect();
            print!("{}", output::json(&v));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.version.clone(),
                        if d.environment.is_empty() {
                            "-".into()
                        } else {
                            d.environment.clone()
                        },
                        if d.rollback_of.is_empty() {
                            d.phase.clone()
                        } else {
                            format!("{} (rollback of {})", d.phase, d.rollback_of)
                        },
                        d.created_by.clone(),
                        fmt_ts(d.created_at_ms),
                        rollout_of(d).map(|r| r.summary()).unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &["ID", "VERSION", "ENV", "OUTCOME", "BY", "STARTED", "HOSTS"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

async fn control(client: &ClientArgs, id: &str, action: &str) -> Result<()> {
    let mut c = client.connect().await?;
    let d = c
        .control_deployment(pb::ControlDeploymentRequest {
            id: id.into(),
            action: action.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "deployment {}: {} ({})",
        d.id,
        d.phase,
        if d.blocked_on.is_empty() {
            action
        } else {
            &d.blocked_on
        }
    );
    Ok(())
}

/// `drain` (with `stop` given) or `undrain` (without) of services on a host.
async fn drain(
    client: &ClientArgs,
    host: &str,
    mut services: Vec<String>,
    stop: Option<bool>,
) -> Result<()> {
    let mut c = client.connect().await?;
    if services.is_empty() {
        let hosts = c
            .list_hosts(pb::ListHostsRequest::default())
            .await
            .map_err(status)?
            .into_inner()
            .hosts;
        let h = hosts
            .into_iter()
            .find(|h| h.host_id == host)
            .with_context(|| format!("no host `{host}`"))?;
        services = h.services.into_iter().map(|s| s.service).collect();
        if services.is_empty() {
            bail!("host `{host}` runs no service");
        }
    }
    let mut failed = 0;
    for service in services {
        let kind = match stop {
            Some(stop) => pb::command::Kind::Drain(pb::DrainCommand {
                service: service.clone(),
                stop,
            }),
            None => pb::command::Kind::Undrain(pb::UndrainCommand {
                service: service.clone(),
            }),
        };
        let mut events = c
            .send_command(pb::SendCommandRequest {
                host_id: host.into(),
                command: Some(pb::Command {
                    kind: Some(kind),
                    ..Default::default()
                }),
                timeout_ms: 0,
            })
            .await
            .map_err(status)?
            .into_inner();
        while let Some(ev) = events.message().await.map_err(status)? {
            match ev.event {
                Some(pb::command_event::Event::Progress(p)) => {
                    println!("{host}/{service}: {}: {}", p.phase, p.message)
                }
                Some(pb::command_event::Event::Result(r)) => {
                    println!(
                        "{host}/{service}: {} {}",
                        if r.ok { "ok:" } else { "FAILED:" },
                        r.message
                    );
                    if !r.ok {
                        failed += 1;
                    }
                }
                None => {}
            }
        }
    }
    if failed > 0 {
        bail!("{failed} service(s) failed");
    }
    Ok(())
}

/// Turns a gRPC status into an error whose message is the coordinator's.
pub fn status(s: tonic::Status) -> anyhow::Error {
    let code = match s.code() {
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        tonic::Code::Unavailable => "coordinator unavailable",
        tonic::Code::FailedPrecondition => "refused",
        _ => "coordinator error",
    };
    anyhow::anyhow!("{code}: {}", s.message())
}

async fn serve(cfg: CoordinatorConfig) -> Result<()> {
    let running = crate::server::Server::start(cfg).await?;
    let status = format!("READY=1\nSTATUS=listening on {}", running.url);
    if let Err(e) = cutover_common::sdnotify::notify(&status) {
        tracing::warn!(error = %e, "notifying systemd failed");
    }
    running
        .run_until(async {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = cutover_common::sdnotify::notify("STOPPING=1");
        })
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn ca(cmd: CaCmd) -> Result<()> {
    match cmd {
        CaCmd::Init { config, cluster } => {
            let cfg = config.load()?;
            let out = pki_setup::init(&cfg, &cluster)?;
            println!("created the cluster CA in {}", out.pki_dir.display());
            println!("CA fingerprint: {}", out.fingerprint);
            println!("admin operator: {}", out.admin.bundle.display());
            println!();
            println!("Use the CLI as admin with:");
            println!(
                "  export CUTOVER_CLI_CONFIG={}",
                out.admin.cli_config.display()
            );
            Ok(())
        }
        CaCmd::Fingerprint(config) => {
            let cfg = config.load()?;
            println!("{}", pki_setup::load_ca(&cfg)?.fingerprint());
            Ok(())
        }
        CaCmd::IssueOperator {
            config,
            name,
            role,
            ttl,
            out,
        } => {
            let cfg = config.load()?;
            let ca = pki_setup::load_ca(&cfg)?;
            let store = pki_setup::open_store(&cfg)?;
            let ttl = ttl.unwrap_or(cfg.operator_cert_ttl);
            let issued =
                pki_setup::issue_operator(&cfg, &ca, &store, &name, role, ttl, out.as_deref())?;
            println!(
                "issued operator {} ({}) valid until {}",
                issued.name,
                role.as_str(),
                humantime::format_rfc3339_seconds(issued.not_after)
            );
            println!("  certificate and key: {}", issued.bundle.display());
            println!("  CLI config:          {}", issued.cli_config.display());
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct TokenOut {
    token: String,
    token_id: String,
    expires_at: String,
    ca_fingerprint: String,
    coordinator: String,
}

async fn token(client: &ClientArgs, cmd: TokenCmd) -> Result<()> {
    let TokenCmd::Create {
        ttl,
        uses,
        labels: l,
        output,
    } = cmd;
    let labels = labels::parse(&l).context("--labels")?;
    let resolved = client.resolve()?;
    let mut c = crate::client::connect(&resolved).await?;
    let r = c
        .create_token(pb::CreateTokenRequest {
            ttl_ms: ttl.as_millis() as u64,
            uses,
            labels: labels.into_iter().collect(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let out = TokenOut {
        token: r.token,
        token_id: r.token_id,
        expires_at: humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(
            r.expires_at_ms,
        ))
        .to_string(),
        ca_fingerprint: r.ca_fingerprint,
        coordinator: resolved.url,
    };
    match output {
        Format::Json => print!("{}", output::json(&out)),
        Format::Table => {
            println!("{}", out.token);
            eprintln!(
                "token {} expires {} ({} use{}). Enroll a host with:\n  cutover-agent enroll --coordinator {} --token-file FILE --ca-fingerprint {}",
                out.token_id,
                out.expires_at,
                uses,
                if uses == 1 { "" } else { "s" },
                out.coordinator,
                out.ca_fingerprint
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct HostOut {
    host: String,
    labels: BTreeMap<String, String>,
    state: String,
    last_seen: Option<String>,
    agent_version: String,
    address: String,
    hostname: String,
    cpus: u32,
    memory_bytes: u64,
    os: String,
    kernel: String,
    arch: String,
    boot_id: String,
    certificate_expires: String,
    session: Option<String>,
    services: Vec<ServiceOut>,
}

#[derive(Serialize)]
struct ServiceOut {
    service: String,
    active_release: String,
    previous_release: String,
    staged_releases: Vec<String>,
    drained: bool,
    status: String,
    pid: u32,
    restarts: u32,
    /// Why it drifted from what Cutover deployed; empty: it did not.
    drift: Vec<String>,
}

/// The hosts matching `selector` (checked here first, for a local error).
async fn list_hosts(client: &ClientArgs, selector: &str) -> Result<pb::ListHostsResponse> {
    labels::Selector::parse(selector).context("--selector")?;
    let mut c = client.connect().await?;
    Ok(c.list_hosts(pb::ListHostsRequest {
        selector: selector.into(),
    })
    .await
    .map_err(status)?
    .into_inner())
}

async fn hosts(client: &ClientArgs, selector: &str, output: Format) -> Result<()> {
    let r = list_hosts(client, selector).await?;
    let fmt_ts = |ms: i64| {
        humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(ms)).to_string()
    };
    match output {
        Format::Json => {
            let hosts: Vec<HostOut> = r
                .hosts
                .into_iter()
                .map(|h| {
                    let f = h.facts.unwrap_or_default();
                    HostOut {
                        host: h.host_id,
                        labels: h.labels.into_iter().collect(),
                        state: h.state,
                        last_seen: (h.last_seen_ms > 0).then(|| {
                            humantime::format_rfc3339_millis(cutover_common::time::from_unix_ms(
                                h.last_seen_ms,
                            ))
                            .to_string()
                        }),
                        agent_version: h.agent_version,
                        address: h.address,
                        hostname: f.hostname,
                        cpus: f.cpus,
                        memory_bytes: f.memory_bytes,
                        os: f.os,
                        kernel: f.kernel,
                        arch: f.arch,
                        boot_id: h.boot_id,
                        certificate_expires: fmt_ts(h.certificate_not_after_ms),
                        session: (!h.session_id.is_empty()).then_some(h.session_id),
                        services: h
                            .services
                            .into_iter()
                            .map(|s| {
                                let health = s.health.unwrap_or_default();
                                ServiceOut {
                                    service: s.service,
                                    active_release: s.active_release,
                                    previous_release: s.previous_release,
                                    staged_releases: s.staged_releases,
                                    drained: s.drained,
                                    status: if s.stopped {
                                        "stopped".into()
                                    } else {
                                        health.status
                                    },
                                    pid: health.pid,
                                    restarts: health.restarts,
                                    drift: s.drift,
                                }
                            })
                            .collect(),
                    }
                })
                .collect();
            print!("{}", output::json(&hosts));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = r
                .hosts
                .into_iter()
                .map(|h| {
                    let labels: BTreeMap<String, String> = h.labels.into_iter().collect();
                    let drifted: Vec<String> = h
                        .services
                        .iter()
                        .filter(|s| !s.drift.is_empty())
                        .map(|s| s.service.clone())
                        .collect();
                    vec![
                        h.host_id,
                        labels::format(&labels),
                        h.state,
                        output::ago(h.last_seen_ms),
                        h.agent_version,
                        h.address,
                        if drifted.is_empty() {
                            "-".into()
                        } else {
                            format!("yes: {} (cutover drift)", drifted.join(", "))
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "HOST",
                        "LABELS",
                        "STATE",
                        "LAST SEEN",
                        "AGENT",
                        "ADDRESS",
                        "DRIFT"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct AuditOut {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: String,
}

async fn audit(client: &ClientArgs, limit: u32, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    let r = c
        .list_audit(pb::ListAuditRequest { limit })
        .await
        .map_err(status)?
        .into_inner();
    let rows: Vec<AuditOut> = r
        .entries
        .into_iter()
        .map(|e| AuditOut {
            id: e.id,
            at: humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(e.at_ms))
                .to_string(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
        })
        .collect();
    match output {
        Format::Json => print!("{}", output::json(&rows)),
        Format::Table => {
            let t: Vec<Vec<String>> = rows
                .into_iter()
                .map(|a| vec![a.at, a.actor, a.action, a.target, a.outcome, a.detail])
                .collect();
            print!(
                "{}",
                output::table(
                    &["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
                    &t
                )
            );
        }
    }
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    Ok(())
}

/// "2h 5m" from milliseconds, for people.
fn human_ms(ms: i64) -> String {
    let secs = (ms.max(0) as u64).div_ceil(1000);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

async fn stats(
    client: &ClientArgs,
    service: Option<String>,
    environment: Option<String>,
    since: std::time::Duration,
    output: Format,
) -> Result<()> {
    let mut c = client.connect().await?;
    let since_ms = cutover_common::time::now_ms() - since.as_millis() as i64;
    let s = c
        .get_stats(pb::StatsRequest {
            service: service.clone().unwrap_or_default(),
            environment: environment.clone().unwrap_or_default(),
            since_ms,
        })
        .await
        .map_err(status)?
        .into_inner();
    let summary = |d: &Option<pb::DurationSummary>| {
        d.as_ref()
            .map(|d| serde_json::json!({"n": d.n, "median_ms": d.median_ms, "p90_ms": d.p90_ms}))
    };
    match output {
        Format::Json => {
            let v = serde_json::json!({
                "service": service, "environment": environment,
                "since_ms": s.since_ms, "until_ms": s.until_ms,
                "changes": s.changes, "succeeded": s.succeeded, "failed": s.failed,
                "deployment_frequency_per_day": s.deployments_per_day,
                "lead_time": summary(&s.lead_time),
                "change_failure_rate": s.change_failure_rate,
                "time_to_restore": summary(&s.time_to_restore),
                "unrestored": s.unrestored,
                "failed_ids": s.failed_ids,
            });
            print!("{}", output::json(&v));
        }
        Format::Table => {
            let scope = format!(
                "{} in {}, last {}",
                service.as_deref().unwrap_or("every service"),
                environment.as_deref().unwrap_or("every environment"),
                humantime::format_duration(since)
            );
            let dist = |d: &Option<pb::DurationSummary>, what: &str| match d {
                Some(d) => format!(
                    "median {}, p90 {} ({} {what})",
                    human_ms(d.median_ms),
                    human_ms(d.p90_ms),
                    d.n
                ),
                None => "-".into(),
            };
            let rows = vec![
                vec![
                    "deployment frequency".to_string(),
                    format!(
                        "{:.2} per day ({} succeeded of {} changes)",
                        s.deployments_per_day, s.succeeded, s.changes
                    ),
                ],
                vec![
                    "lead time for changes".into(),
                    dist(&s.lead_time, "with a commit time"),
                ],
                vec![
                    "change failure rate".into(),
                    match s.change_failure_rate {
                        Some(r) => format!(
                            "{:.1}% ({} failed: {})",
                            r * 100.0,
                            s.failed,
                            s.failed_ids.join(", ")
                        ),
                        None => "-".into(),
                    },
                ],
                vec![
                    "time to restore".into(),
                    if s.unrestored > 0 {
                        format!(
                            "{}; {} not restored yet",
                            dist(&s.time_to_restore, "restored"),
                            s.unrestored
                        )
                    } else {
                        dist(&s.time_to_restore, "restored")
                    },
                ],
            ];
            println!("{scope}");
            print!("{}", output::table(&["MEASURE", "VALUE"], &rows));
        }
    }
    Ok(())
}

async fn drift(client: &ClientArgs, selector: &str, output: Format) -> Result<()> {
    let r = list_hosts(client, selector).await?;
    let drifted: Vec<(String, String, String, Vec<String>)> = r
        .hosts
        .into_iter()
        .flat_map(|h| {
            let host = h.host_id.clone();
            h.services
                .into_iter()
                .filter(|s| !s.drift.is_empty())
                .map(move |s| (host.clone(), s.service, s.active_release, s.drift))
        })
        .collect();
    match output {
        Format::Json => {
            let v: Vec<serde_json::Value> = drifted
                .iter()
                .map(|(h, s, r, d)| serde_json::json!({"host": h, "service": s, "runs": r, "drift": d}))
                .collect();
            print!("{}", output::json(&v));
        }
        Format::Table if drifted.is_empty() => {
            println!("no drift: every host runs what Cutover deployed, untouched");
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = drifted
                .into_iter()
                .map(|(h, s, r, d)| vec![h, s, r, d.join("; ")])
                .collect();
            print!(
                "{}",
                output::table(&["HOST", "SERVICE", "RUNS", "WHY"], &rows)
            );
        }
    }
    Ok(())
}

/// An RFC 3339 time with any UTC offset (`Z`, `+02:00`, `-0500`), as Unix
/// ms.
fn parse_commit_time(t: &str) -> Result<i64> {
    let t = t.trim();
    let (base, offset_s) = match t.char_indices().rev().find(|(_, c)| *c == '+' || *c == '-') {
        // An offset follows the time (after the `T...` part), not the date.
        Some((i, c)) if t[..i].contains('T') => {
            let off = t[i + 1..].replace(':', "");
            anyhow::ensure!(off.len() == 4, "bad UTC offset in `{t}`");
            let (h, m): (i64, i64) = (off[..2].parse()?, off[2..].parse()?);
            let sign = if c == '-' { -1 } else { 1 };
            (&t[..i], sign * (h * 3600 + m * 60))
        }
        _ => (t.trim_end_matches('Z'), 0),
    };
    let utc = humantime::parse_rfc3339_weak(&format!("{base}Z"))?;
    Ok(cutover_common::time::to_unix_ms(utc) - offset_s * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
