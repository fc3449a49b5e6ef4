//! The `cutover-agent` command line.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use cutover_common::tls::ChannelOptions;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::enroll::{self, EnrollRequest};
use crate::identity::IdentityFiles;

/// The Cutover host agent.
#[derive(Debug, Parser)]
#[command(name = "cutover-agent", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const ENROLL_EXAMPLES: &str = "Examples:\n  cutover-agent enroll --coordinator https://coordinator.example:7443 --token-file /root/web-1.token --ca-fingerprint sha256:9f2c...\n  cutover-agent enroll --coordinator https://c1:7443,https://c2:7443 --token-file - --ca-fingerprint sha256:9f2c... < web-1.token";

const DOCTOR_EXAMPLES: &str = "Examples:\n  cutover-agent doctor --dir ./release          does this app fit Cutover's swap? (docs/app-contract.md)";

/// Output of a command that prints (`-o text|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For scripts: one JSON object.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Agent config file (default /etc/cutover/agent.toml if present).
    #[arg(long, short = 'c', env = "CUTOVER_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: keep a session to the coordinator.
    Run(ConfigArg),
    /// Enroll this host with a coordinator using a join token.
    #[command(after_help = ENROLL_EXAMPLES)]
    Enroll {
        #[command(flatten)]
        config: ConfigArg,
        /// Coordinator URL, e.g. https://coordinator:7443; several
        /// coordinators sharing a store as a comma-separated list (a
        /// standby's answer is followed to the leader).
        #[arg(long)]
        coordinator: String,
        /// The join token (prefer --token-file: command lines are visible to other users).
        #[arg(long, env = "CUTOVER_JOIN_TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// File holding the join token (`-` for standard input).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The cluster CA fingerprint (`cutover ca fingerprint` on the coordinator).
        #[arg(long)]
        ca_fingerprint: String,
        /// Host id to enroll as (default: this machine's hostname).
        #[arg(long)]
        host_id: Option<String>,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Run a release once and say which swap modes it supports.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor {
        /// The unpacked release directory.
        #[arg(long)]
        dir: PathBuf,
        /// How long the app may take to exit on SIGTERM.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// The command, relative to the release directory.
        #[arg(last = true, required = true)]
        command: Vec<String>,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Check the agent config and exit (for ExecStartPre=).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print the shell completion script (e.g. `cutover-agent completions
    /// bash > /etc/bash_completion.d/cutover-agent`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: cutover_common::cli_docs::Shell,
    },
    /// Write the manual pages (cutover-agent.1 and one per command) into DIR.
    Man {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Load and validate the config; print it with defaults filled in
    /// (TOML, or JSON with -o json).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Output: `text` for people, `json` for scripts.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(c) => {
            // Before anything else: the sockets systemd handed back.
            let inherited = std::sync::Arc::new(crate::sd::Inherited::from_env());
            let notifier = std::sync::Arc::new(crate::sd::Notifier::from_env());
            let cfg = AgentConfig::load(c.config.as_deref())?;
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            // Installed here, before anything can tell systemd READY=1: a
            // stop sent at once must find the handler.
            use tokio::signal::unix::{SignalKind, signal};
            let mut term =
                signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
            let mut int =
                signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("shutting down");
                stop.cancel();
            });
            let host = crate::runtime::HostIntegration {
                service_ip: cfg.service_ip,
                journal_socket: cfg.journal_socket.clone(),
                policy: cfg.policy.clone(),
                notifier: notifier.clone(),
                inherited,
            };
            cfg.prepare_state_dir()
                .with_context(|| format!("preparing {}", cfg.state_dir.display()))?;
            let (rt, outputs) = crate::runtime::Runtime::start(cfg.state_dir.clone(), host)
                .await
                .with_context(|| format!("starting the runtime in {}", cfg.state_dir.display()))?;
            if let Some(every) = notifier.watchdog_interval() {
                let (rt, stop) = (rt.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => rt.watchdog_ping(every * 2),
                        }
                    }
                });
            }
            if let Some(addr) = cfg.readiness_listen {
                let (rt, stop) = (rt.clone(), shutdown.clone());
                tokio::spawn(async move {
                    if let Err(e) = crate::lb::serve(addr, rt, stop).await {
                        tracing::error!(%addr, error = %e, "readiness endpoint failed");
                    }
                });
            }
            let r = crate::session::run(cfg, rt, outputs, shutdown).await;
            let _ = notifier.notify("STOPPING=1");
            r?;
            Ok(())
        }
        Command::Enroll {
            config,
            coordinator,
            token,
            token_file,
            ca_fingerprint,
            host_id,
            output,
        } => {
            let cfg = AgentConfig::load(config.config.as_deref())?;
            let token = match (token, token_file) {
                (Some(t), _) => t,
                (None, Some(p)) if p.as_os_str() == "-" => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the token from stdin")?;
                    s
                }
                (None, Some(p)) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                (None, None) => bail!("no join token: pass --token-file FILE (or --token)"),
            };
            let host_id = host_id.unwrap_or_else(|| {
                cutover_common::identity::host_id_from_hostname(
                    &sysinfo::System::host_name().unwrap_or_default(),
                )
            });
            cfg.prepare_state_dir()
                .with_context(|| format!("preparing {}", cfg.state_dir.display()))?;
            let files = IdentityFiles::new(&cfg.identity_dir());
            let opts = ChannelOptions {
                connect_timeout: cfg.connect_timeout,
                ..ChannelOptions::default()
            };
            let rec = enroll::enroll(
                &files,
                EnrollRequest {
                    coordinator,
                    token,
                    ca_fingerprint,
                    host_id,
                },
                opts,
            )
            .await?;
            if output == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({
                        "host": rec.host_id,
                        "labels": rec.labels,
                        "identity_dir": files.dir,
                    })
                );
                return Ok(());
            }
            println!(
                "enrolled as host {} with labels {{{}}}; identity in {}",
                rec.host_id,
                cutover_common::labels::format(&rec.labels),
                files.dir.display()
            );
            Ok(())
        }
        Command::Doctor {
            dir,
            grace,
            command,
            output,
        } => {
            // Relative to where it is run, as the docs show it
            // (`--dir ./release`): the app runs with its own working
            // directory, so the path is made absolute first.
            let dir = std::path::absolute(&dir)
                .and_then(|d| d.canonicalize())
                .with_context(|| format!("--dir {}: no such directory", dir.display()))?;
            if !dir.is_dir() {
                bail!("--dir {}: not a directory", dir.display());
            }
            let work = crate::doctor::work_dir();
            let found = crate::doctor::examine(&dir, command, grace, &work).await;
            let _ = std::fs::remove_dir_all(&work);
            let found = found.map_err(anyhow::Error::msg)?;
            match output {
                Format::Json => println!("{}", found.json()),
                Format::Text => print!("{}", found.render(grace)),
            }
            Ok(())
        }
        Command::Config {
            cmd: ConfigCmd::Check { config, output },
        } => {
            let cfg = AgentConfig::load(config.config.as_deref())?;
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&cfg).context("rendering config")?
                ),
                Format::Text => println!("{}", toml_render(&cfg)),
            }
            eprintln!("config ok");
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            cutover_common::cli_docs::print_completions(Cli::command(), shell);
            Ok(())
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            cutover_common::cli_docs::write_man_pages(Cli::command(), &dir)
                .map_err(anyhow::Error::msg)
        }
    }
}

fn toml_render(cfg: &AgentConfig) -> String {
    toml::to_string_pretty(cfg).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_packaged_manual_pages_and_completions_are_those_of_this_build() {
        let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
        let stale = cutover_common::cli_docs::stale_in(Cli::command(), &packaging);
        assert!(
            stale.is_empty(),
            "stale (make them again: `cutover-agent man --dir packaging/man/cutover-agent` and \
             `cutover-agent completions SHELL > packaging/completions/cutover-agent.SHELL`):\n{}",
            stale.join("\n")
        );
    }
}
