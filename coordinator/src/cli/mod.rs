//! The `cutover` command line: argument parsing and one function per
//! command. Commands that talk to a running coordinator go through
//! [`crate::client`]; `serve`, `ca` and `config check` work on local files.

mod deploy;
mod fleet;
pub(crate) mod json;

use deploy::*;
pub use deploy::{DeployOutcome, follow, follow_with};
use fleet::*;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use cutover_proto::v1 as pb;

use crate::client::ClientArgs;
use crate::config::CoordinatorConfig;
use crate::grpc::auth::Role;
use crate::output::Format;

/// Cutover: boring deploys for fleets of Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Commands that never talk to a coordinator: the connection options
/// (global, for the others) are hidden from their help, pages and
/// completions.
const LOCAL: &[&str] = &[
    "serve",
    "backup",
    "restore",
    "config",
    "ca",
    "haproxy-switch",
    "validate",
    "demo",
    "completions",
    "man",
];

/// The command line, with the connection options shown only on the
/// commands that use them: a local command gets hidden stand-ins of the
/// same names, which the global options are not copied over (it ignores
/// them either way).
pub fn command() -> clap::Command {
    fn hide_connection(mut c: clap::Command) -> clap::Command {
        // Typed as the real options (ClientArgs): clap panics when an
        // id is read as another type than it was defined with.
        for (id, long, path) in [
            ("coordinator", "coordinator", false),
            ("ca", "ca", true),
            ("identity", "identity", true),
            ("cli_config", "cli-config", true),
        ] {
            let arg = clap::Arg::new(id).long(long).hide(true);
            c = c.arg(if path {
                arg.value_parser(clap::value_parser!(std::path::PathBuf))
            } else {
                arg.value_parser(clap::value_parser!(String))
            });
        }
        let subs: Vec<String> = c
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in subs {
            c = c.mut_subcommand(name, hide_connection);
        }
        c
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    for name in LOCAL {
        cmd = cmd.mut_subcommand(name, hide_connection);
    }
    cmd
}

/// Parses the command line (usage errors exit 64, as
/// [`cutover_common::parse_args`]).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                i32::from(cutover_common::EXIT_USAGE)
            } else {
                0
            });
        }
    }
}

const EXAMPLES: &str = "\
Examples:
  cutover demo                                  a whole fleet on this machine, a deploy and a rollback
  cutover validate web.toml                     check a spec (no coordinator needed)
  cutover plan web.toml                         the batches it would make against today's fleet
  cutover deploy web.toml --version 1.4.2 --artifact https://artifacts/web-1.4.2.tar.gz --sha256 9f2c... --watch
  cutover status                                the newest deployment; `cutover status d42` one of them
  cutover rollback web --environment production --watch
  cutover hosts -l role=web -o json             the fleet, for scripts
  cutover drain web-3 --stop                    out of the load balancers for maintenance

Exit codes: 0 ok, 1 error, 64 usage error; with --watch also 2 failed, 3 rolled back, 4 aborted.
The connection options (--coordinator, --ca, --identity, --cli-config) apply to every
command that talks to a coordinator; `cutover whoami` checks them.
Manual pages: `cutover man --dir DIR`; completions: `cutover completions bash`.";

const HOSTS_EXAMPLES: &str = "Examples:\n  cutover hosts                         every host: state, last seen, drained, drift\n  cutover hosts -l role=web,zone!=b     a selection\n  cutover hosts show web-3              one host: services, releases on disk, health\n  cutover hosts remove web-3            out of the fleet for good (after `drain --stop`)";

const DRAIN_EXAMPLES: &str = "Examples:\n  cutover drain web-3                   out of the balancers, still running\n  cutover drain web-3 --stop            and its services stopped (maintenance, decommission)\n  cutover drain web-3 -s api            one service only\n  cutover undrain web-3                 back in";

const PLAN_EXAMPLES: &str = "Examples:\n  cutover plan web.toml                 the batches against today's fleet\n  cutover plan web.toml -o json         for a pipeline to check before it deploys";

const STATUS_EXAMPLES: &str = "Examples:\n  cutover status                        the newest deployment\n  cutover status d42                    one deployment: now, why, every host\n  cutover status d42 -o json            for scripts (docs/cli-json.md)";

const WATCH_EXAMPLES: &str = "Examples:\n  cutover watch d42                     follow it to its end; exit 0 succeeded, 3 rolled back\n  cutover watch d42 -o json             one JSON line per state";

const HISTORY_EXAMPLES: &str = "Examples:\n  cutover history web                   newest first: version, environment, outcome, by whom\n  cutover history web --limit 100 -o json";

const ROLLBACK_EXAMPLES: &str = "Examples:\n  cutover rollback web --watch                           one step back from what is live\n  cutover rollback web --to 1.4.1 --watch                a version that once succeeded\n  cutover rollback web --environment production --watch";

const DEPLOY_EXAMPLES: &str = "\
Examples:
  cutover deploy web.toml --version 1.4.2 --artifact https://artifacts/web-1.4.2.tar.gz --sha256 9f2c... --watch
  cutover deploy web.toml --watch --request-id \"$CI_PIPELINE_ID\"       safe to retry from CI
  cutover deploy web.toml --require-success-in staging --watch   the promotion gate";

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
    /// Copy the store and the PKI into a new directory, while the
    /// coordinator runs (run on the coordinator host).
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// A new (or empty) directory for the backup.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Put a backup in place of the store and the PKI; the coordinator
    /// must be stopped (run on the coordinator host).
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// A directory `cutover backup` wrote.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Replace an existing store (it is kept beside, as
        /// `.before-restore`).
        #[arg(long)]
        force: bool,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
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
    #[command(after_help = HOSTS_EXAMPLES)]
    Hosts {
        #[command(subcommand)]
        cmd: Option<HostsCmd>,
        /// Only hosts matching this label selector (e.g. role=web,zone!=b).
        #[arg(long, short = 'l', default_value = "")]
        selector: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// One service: what is live in each environment, the deployment
    /// running now, every host that runs it (version, health, drain,
    /// drift) and the latest deployments.
    Service {
        /// The service.
        service: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Every service in the fleet: on how many hosts, which releases are
    /// active where, and the hosts drained, stopped or drifted.
    ///
    /// Example: `cutover services -o json`
    Services {
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show the coordinator's audit log, newest first.
    Audit {
        /// At most this many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show a service's output (stdout and stderr of its instances) from
    /// the hosts running it, fetched over the agents' sessions.
    ///
    /// Example: `cutover logs web --host web-1 --tail 50 -f`
    Logs {
        /// The service.
        service: String,
        /// Only this host (repeat for more); default every host running it.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// How many of the newest lines per host to show first (at most 5000).
        #[arg(long, default_value_t = 100)]
        tail: u32,
        /// Only instances whose output changed within this long, e.g. 1h.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Keep showing new lines as they come, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show which operator and role this CLI authenticates as.
    Whoami {
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show the coordinators sharing the store: which leads, in which
    /// term, which are up (several coordinators on PostgreSQL; with the
    /// SQLite store, the one coordinator).
    ///
    /// Example: `cutover coordinators`
    Coordinators {
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// A blue/green switch command for HAProxy (a spec's
    /// `strategy.switch`): sets the live group's servers of BACKEND
    /// (named after the hosts, from CUTOVER_HOSTS) `ready`, waits until
    /// HAProxy has them up, then sets every other server `drain`. Talks
    /// to HAProxy's admin socket (`stats socket ... level admin`).
    /// docs/load-balancers.md.
    HaproxySwitch {
        /// HAProxy's admin socket; outside /tmp and /home, which the
        /// coordinator's unit hides.
        #[arg(long, default_value = "/run/haproxy/admin.sock")]
        socket: PathBuf,
        /// The backend whose servers are the service's hosts.
        #[arg(long)]
        backend: String,
        /// How long the live group may take to be up at HAProxy.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        wait_up: std::time::Duration,
    },
    /// Take a host out of its load balancers (maintenance): its readiness
    /// endpoint answers 503, pre_drain hooks run, then it waits until each
    /// balancer checking the endpoint has been told "down" `balancer_fall`
    /// times (or `deregistration_delay`, as the spec's `[drain]` says),
    /// and says who confirmed. A swap in progress finishes first; later
    /// deployments skip the host unless --include-drained.
    /// docs/load-balancers.md.
    #[command(after_help = DRAIN_EXAMPLES)]
    Drain {
        /// The host's id (see `cutover hosts`).
        host: String,
        /// Only these services (default: every service on the host).
        #[arg(long = "service", short = 's')]
        services: Vec<String>,
        /// Also stop the services once the balancers confirmed: the stop
        /// signal, on which apps finish requests in flight and close idle
        /// keep-alive connections, then `swap.grace`. Not stopped if a
        /// balancer did not confirm within `balancer_timeout`.
        #[arg(long)]
        stop: bool,
        /// Output: `text` for people, `json` for scripts (JSON lines, one
        /// per event; docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Put a drained host back (starting services the drain stopped).
    Undrain {
        /// The host's id (see `cutover hosts`).
        host: String,
        /// Only these services (default: every drained service on the host).
        #[arg(long = "service", short = 's')]
        services: Vec<String>,
        /// Output: `text` for people, `json` for scripts (JSON lines, one
        /// per event; docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Check a deployment spec (locally; no coordinator needed).
    Validate {
        /// The deployment spec (TOML; docs/spec-reference.md).
        file: PathBuf,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Show the batches a spec would make against today's fleet.
    #[command(after_help = PLAN_EXAMPLES)]
    Plan {
        /// The deployment spec (TOML).
        file: PathBuf,
        /// As `deploy --include-drained`.
        #[arg(long)]
        include_drained: bool,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Deploy a spec. Exit codes with --watch: 0 succeeded, 2 failed,
    /// 3 rolled back, 4 aborted (1: could not start).
    #[command(after_help = DEPLOY_EXAMPLES)]
    Deploy {
        /// The deployment spec (TOML).
        file: PathBuf,
        /// The version being deployed (or `version` in the spec).
        #[arg(long)]
        version: Option<String>,
        /// Artifact URL (or `[artifact]` in the spec).
        #[arg(long, requires = "sha256")]
        artifact: Option<String>,
        /// The artifact's SHA-256 (64 hex digits; `sha256:` prefix and
        /// either case accepted).
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
        /// Also deploy to hosts where an operator drained the service (a
        /// drained instance is swapped and stays drained; one stopped by
        /// `drain --stop` gets the release, not started). Without it
        /// they are skipped and named.
        #[arg(long)]
        include_drained: bool,
        /// Makes the deploy safe to run again (a CI job retried after a
        /// timeout): the same ID from the same operator gets the
        /// deployment the first run started, not a second one. E.g. the
        /// CI run's id.
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
        /// Start it even outside the spec's deploy windows
        /// (`targets.windows`), saying why: the reason goes to the audit
        /// log.
        #[arg(long, value_name = "REASON")]
        outside_window: Option<String>,
        /// Follow the rollout until it ends; the exit code tells how.
        #[arg(long)]
        watch: bool,
        /// Output: `text`, or `json`: the deployment (with --watch, one
        /// line of JSON per state until it ends).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Hosts whose services differ from what Cutover deployed, and why
    /// (exit 0 either way; `-o json` for scripts).
    Drift {
        /// Only hosts matching this label selector.
        #[arg(long, short = 'l', default_value = "")]
        selector: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
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
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// A deployment's state (default: the newest).
    #[command(after_help = STATUS_EXAMPLES)]
    Status {
        /// A deployment id (d42; see `cutover history SERVICE`).
        id: Option<String>,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Follow a deployment until it ends (same exit codes as deploy --watch).
    #[command(after_help = WATCH_EXAMPLES)]
    Watch {
        /// A deployment id (d42).
        id: String,
        /// Output: `text`, or `json`: one line of JSON per state until it
        /// ends (the `status -o json` schema).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Deployments of a service, newest first.
    #[command(after_help = HISTORY_EXAMPLES)]
    History {
        /// The service.
        service: String,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Stop starting new batches of a deployment.
    Pause {
        /// A deployment id (d42).
        id: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Go on with a paused deployment.
    Resume {
        /// A deployment id (d42).
        id: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Stop a deployment and roll back the hosts it changed.
    Abort {
        /// A deployment id (d42).
        id: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Promote a canary step.
    Promote {
        /// A deployment id (d42).
        id: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Approve a deployment whose spec asks for it (`targets.approval`):
    /// it has staged everywhere and waits; an operator other than the one
    /// who submitted it lets it go on.
    Approve {
        /// A deployment id (d42).
        id: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Deploy an earlier successful version of a service again.
    #[command(after_help = ROLLBACK_EXAMPLES)]
    Rollback {
        /// The service to roll back.
        service: String,
        /// Default: one step back from what is live (see docs/rollouts.md).
        #[arg(long)]
        to: Option<String>,
        /// The environment to roll back in; required when the service is
        /// deployed to several.
        #[arg(long, value_name = "NAME")]
        environment: Option<String>,
        /// Makes the rollback safe to run again (a retried CI job): the
        /// same ID from the same operator gets the first run's answer.
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
        /// Follow the rollback until it ends (exit codes as deploy --watch).
        #[arg(long)]
        watch: bool,
        /// Output: `text`, or `json`: the deployment (with --watch, one
        /// line of JSON per state until it ends).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Run a whole fleet on this machine: a coordinator, agents and a sample service.
    Demo(crate::demo::DemoArgs),
    /// Print the shell completion script (e.g. `cutover completions bash >
    /// /etc/bash_completion.d/cutover`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: cutover_common::cli_docs::Shell,
    },
    /// Write the manual pages (cutover.1 and one per command) into DIR.
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
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
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
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Print the CA fingerprint agents pin at enrollment.
    Fingerprint {
        #[command(flatten)]
        config: ConfigArg,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Issue an operator certificate and a CLI config for it.
    IssueOperator {
        #[command(flatten)]
        config: ConfigArg,
        /// The operator's name (in the certificate and the audit log).
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
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Revoke an operator (every certificate of the name) or one
    /// certificate by serial. Takes effect on the operator's next call,
    /// also on a running coordinator; re-issuing the name later never
    /// brings a revoked certificate back.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["name", "serial"])))]
    RevokeOperator {
        #[command(flatten)]
        config: ConfigArg,
        /// The operator whose certificates are all revoked.
        #[arg(long)]
        name: Option<String>,
        /// One certificate's serial (hex, as in the audit log's
        /// `operator.issue` line).
        #[arg(long)]
        serial: Option<String>,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
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
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostsCmd {
    /// Forget a host; its certificate stops working at its next connection.
    Remove {
        /// The host's id (see `cutover hosts`).
        host: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// One host in detail: labels, machine, agent, and every service with
    /// its releases, health, drain and drift.
    Show {
        /// The host's id (see `cutover hosts`).
        host: String,
        /// Output: `text` for people, `json` for scripts (docs/cli-json.md).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(c) => serve(c.load()?).await,
        Command::Config {
            cmd: ConfigCmd::Check { config, output },
        } => {
            let cfg = config.load()?;
            // The store's settings too (its password file, TLS where
            // needed), without connecting.
            cfg.store_location()?;
            match output {
                Format::Json => print!("{}", crate::output::json(&cfg)),
                Format::Table => println!(
                    "{}",
                    toml::to_string_pretty(&cfg).context("rendering config")?
                ),
            }
            eprintln!("config ok");
            Ok(())
        }
        Command::Ca { cmd } => ca(cmd),
        Command::Backup { config, to, output } => {
            let s = crate::backup::backup(&config.load()?, &to)?;
            if output == Format::Json {
                print!(
                    "{}",
                    crate::output::json(
                        &serde_json::json!({"dir": s.dir, "deployments": s.deployments, "hosts": s.hosts, "pki_files": s.pki_files})
                    )
                );
                return Ok(());
            }
            println!(
                "backed up {} deployment(s), {} host(s) and {} PKI file(s) into {} (it holds the CA key: keep it as safe as the coordinator)",
                s.deployments,
                s.hosts,
                s.pki_files,
                s.dir.display()
            );
            Ok(())
        }
        Command::Restore {
            config,
            from,
            force,
            output,
        } => {
            let s = crate::backup::restore(&config.load()?, &from, force)?;
            if output == Format::Json {
                print!(
                    "{}",
                    crate::output::json(
                        &serde_json::json!({"dir": s.dir, "deployments": s.deployments, "hosts": s.hosts, "pki_files": s.pki_files})
                    )
                );
                return Ok(());
            }
            println!(
                "restored {} deployment(s), {} host(s) and {} PKI file(s) into {}; start the coordinator",
                s.deployments,
                s.hosts,
                s.pki_files,
                s.dir.display()
            );
            Ok(())
        }
        Command::Token { cmd } => token(&cli.client, cmd).await,
        Command::Hosts {
            cmd: Some(HostsCmd::Remove { host, output }),
            ..
        } => {
            let mut c = cli.client.connect().await?;
            c.remove_host(pb::RemoveHostRequest {
                request_id: String::new(),
                host_id: host.clone(),
            })
            .await
            .map_err(status)?;
            match output {
                Format::Json => print!(
                    "{}",
                    crate::output::json(&serde_json::json!({"host": host, "removed": true}))
                ),
                Format::Table => println!("removed host {host}"),
            }
            Ok(())
        }
        Command::Hosts {
            cmd: None,
            selector,
            output,
        } => hosts(&cli.client, &selector, output).await,
        Command::Hosts {
            cmd: Some(HostsCmd::Show { host, output }),
            ..
        } => host_detail(&cli.client, &host, output).await,
        Command::Service { service, output } => service_view(&cli.client, &service, output).await,
        Command::Audit { limit, output } => audit(&cli.client, limit, output).await,
        Command::HaproxySwitch {
            socket,
            backend,
            wait_up,
        } => {
            let hosts: Vec<String> = std::env::var("CUTOVER_HOSTS")
                .unwrap_or_default()
                .split(',')
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            let group = std::env::var("CUTOVER_LIVE_GROUP").unwrap_or_default();
            let done = tokio::task::spawn_blocking(move || {
                crate::haproxy::switch(&socket, &backend, &hosts, wait_up)
            })
            .await??;
            println!("group {group}: {done}");
            Ok(())
        }
        Command::Logs {
            service,
            hosts,
            tail,
            since,
            follow,
            output,
        } => {
            let mut c = cli.client.connect().await?;
            let since = since.map(|d| {
                crate::grpc::convert::timestamp(
                    cutover_common::time::now_ms() - d.as_millis() as i64,
                )
            });
            let mut stream = c
                .stream_logs(pb::StreamLogsRequest {
                    service,
                    hosts,
                    tail_lines: tail,
                    since,
                    follow,
                })
                .await
                .map_err(status)?
                .into_inner();
            while let Some(e) = stream.message().await.map_err(status)? {
                match output {
                    // JSON lines: one object per line of output.
                    Format::Json => println!(
                        "{}",
                        if e.error.is_empty() {
                            serde_json::json!({"host": e.host, "instance": e.instance, "text": e.text})
                        } else {
                            serde_json::json!({"host": e.host, "error": e.error})
                        }
                    ),
                    Format::Table if e.error.is_empty() => {
                        let short: String = e.instance.chars().take(8).collect();
                        println!("{} {short}  {}", e.host, e.text);
                    }
                    Format::Table => eprintln!("{}: {}", e.host, e.error),
                }
            }
            Ok(())
        }
        Command::Services { output } => fleet::services(&cli.client, output).await,
        Command::Coordinators { output } => {
            let mut c = cli.client.connect().await?;
            let r = c
                .list_coordinators(pb::ListCoordinatorsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let at = json::time;
            match output {
                Format::Json => print!(
                    "{}",
                    crate::output::json(&serde_json::json!({
                        "store": r.store,
                        "term": r.term,
                        "leader_since": at(&r.leader_since),
                        "coordinators": r.coordinators.iter().map(|m| serde_json::json!({
                            "name": m.name,
                            "address": m.address,
                            "version": m.version,
                            "leader": m.leader,
                            "up": m.up,
                            "started_at": at(&m.started_at),
                            "last_seen": at(&m.last_seen),
                        })).collect::<Vec<_>>(),
                    }))
                ),
                Format::Table => {
                    let since = cutover_common::time::from_unix_ms(deploy::ms_of(&r.leader_since));
                    if r.store == "sqlite" {
                        println!("store: SQLite (one coordinator, no standby)");
                    } else {
                        println!(
                            "store: PostgreSQL, leader term {} since {}",
                            r.term,
                            humantime::format_rfc3339_seconds(since)
                        );
                    }
                    println!(
                        "{:<20} {:<8} {:<5} {:<32} {:<10} LAST SEEN",
                        "NAME", "ROLE", "UP", "ADDRESS", "VERSION"
                    );
                    for m in &r.coordinators {
                        let seen = cutover_common::time::from_unix_ms(deploy::ms_of(&m.last_seen));
                        println!(
                            "{:<20} {:<8} {:<5} {:<32} {:<10} {}",
                            m.name,
                            if m.leader { "leader" } else { "standby" },
                            if m.up { "yes" } else { "no" },
                            m.address,
                            m.version,
                            humantime::format_rfc3339_seconds(seen)
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Whoami { output } => {
            let mut c = cli.client.connect().await?;
            let r = c
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(status)?
                .into_inner();
            match output {
                Format::Json => print!(
                    "{}",
                    crate::output::json(&serde_json::json!({
                        "name": r.name,
                        "role": r.role,
                        "certificate_expires": crate::output::rfc3339(r.certificate_not_after_ms),
                    }))
                ),
                Format::Table => {
                    let until = cutover_common::time::from_unix_ms(r.certificate_not_after_ms);
                    println!(
                        "operator {} (role {}), certificate valid until {}",
                        r.name,
                        r.role,
                        humantime::format_rfc3339_seconds(until)
                    );
                }
            }
            Ok(())
        }
        Command::Drain {
            host,
            services,
            stop,
            output,
        } => drain(&cli.client, &host, services, Some(stop), output).await,
        Command::Undrain {
            host,
            services,
            output,
        } => drain(&cli.client, &host, services, None, output).await,
        Command::Validate { file, output } => {
            let spec = cutover_common::deploy::DeploySpec::load(&file)?;
            match output {
                Format::Json => print!(
                    "{}",
                    crate::output::json(&serde_json::json!({
                        "file": file.display().to_string(),
                        "ok": true,
                        "service": spec.service,
                        "strategy": spec.strategy.kind,
                        "selector": spec.targets.selector,
                        "environment": spec.targets.environment,
                    }))
                ),
                Format::Table => println!(
                    "{}: ok (service {}, {:?} strategy, targets {})",
                    file.display(),
                    spec.service,
                    spec.strategy.kind,
                    spec.targets.selector
                ),
            }
            Ok(())
        }
        Command::Plan {
            file,
            include_drained,
            output,
        } => plan(&cli.client, &file, include_drained, output).await,
        Command::Deploy {
            file,
            version,
            artifact,
            sha256,
            commit_time,
            require_success_in,
            include_drained,
            request_id,
            outside_window,
            watch,
            output,
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
                    include_drained,
                    request_id,
                    outside_window,
                    watch,
                    output,
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
        Command::Watch { id, output } => {
            let mut c = cli.client.connect().await?;
            deploy::follow_as(&mut c, &id, None, output).await
        }
        Command::History {
            service,
            limit,
            output,
        } => history(&cli.client, &service, limit, output).await,
        Command::Pause { id, output } => control(&cli.client, &id, "pause", output).await,
        Command::Resume { id, output } => control(&cli.client, &id, "resume", output).await,
        Command::Abort { id, output } => control(&cli.client, &id, "abort", output).await,
        Command::Promote { id, output } => control(&cli.client, &id, "promote", output).await,
        Command::Approve { id, output } => control(&cli.client, &id, "approve", output).await,
        Command::Rollback {
            service,
            to,
            environment,
            request_id,
            watch,
            output,
        } => {
            let mut c = cli.client.connect().await?;
            let d = c
                .rollback_service(pb::RollbackServiceRequest {
                    service,
                    to_version: to.unwrap_or_default(),
                    environment: environment.unwrap_or_default(),
                    request_id: request_id.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(r) = deploy::status_of(&d).filter(|r| r.switch_back) {
                // Blue/green: traffic went back to the old group at once.
                // Done already: nothing to follow.
                return deploy::started(&mut c, &d, output, false, || {
                    format!(
                        "{}: switched back to group {}: version {} serves again (deployment {}, undoing {})",
                        d.service, r.group, d.version, d.id, d.rollback_of
                    )
                })
                .await;
            }
            deploy::started(&mut c, &d, output, watch, || {
                format!(
                    "deployment {} rolls {} back to version {}",
                    d.id, d.service, d.version
                )
            })
            .await
        }
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Completions { shell } => {
            cutover_common::cli_docs::print_completions(command(), shell);
            Ok(())
        }
        Command::Man { dir } => {
            cutover_common::cli_docs::write_man_pages(command(), &dir).map_err(anyhow::Error::msg)
        }
    }
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
    // Before READY: a stop sent the moment systemd hears it must find the
    // handler in place (else SIGTERM's default ends the process at once,
    // without STOPPING=1 or a clean shutdown). A standby (several
    // coordinators on PostgreSQL) is READY while it waits to lead, and
    // stops at once when told to.
    let stop = shutdown_signals()?;
    tokio::pin!(stop);
    let running = tokio::select! {
        r = crate::server::Server::start(cfg) => r?,
        _ = &mut stop => {
            tracing::info!("shutting down (standby)");
            let _ = cutover_common::sdnotify::notify("STOPPING=1");
            return Ok(());
        }
    };
    let status = format!("READY=1\nSTATUS=listening on {}", running.url);
    if let Err(e) = cutover_common::sdnotify::notify(&status) {
        tracing::warn!(error = %e, "notifying systemd failed");
    }
    running
        .run_until(async {
            stop.await;
            tracing::info!("shutting down");
            let _ = cutover_common::sdnotify::notify("STOPPING=1");
        })
        .await?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on
/// either.
fn shutdown_signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
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
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// The connection options show on the commands that reach a
    /// coordinator, and not on local ones (`validate`, `serve`, `demo`,
    /// `ca init`, ...); the local ones still accept and ignore them.
    #[test]
    fn connection_options_show_only_where_they_apply() {
        let help = |path: &[&str]| {
            let mut c = command();
            // As parsing does: the global options copied down.
            c.build();
            let mut sub = &mut c;
            for p in path {
                sub = sub.find_subcommand_mut(p).unwrap();
            }
            sub.render_long_help().to_string()
        };
        for local in [
            &["validate"][..],
            &["serve"],
            &["demo"],
            &["ca", "init"],
            &["config", "check"],
        ] {
            let h = help(local);
            assert!(!h.contains("--coordinator"), "{local:?}:\n{h}");
        }
        for remote in [&["status"][..], &["deploy"], &["logs"], &["coordinators"]] {
            let h = help(remote);
            assert!(h.contains("--coordinator"), "{remote:?}:\n{h}");
        }
        use clap::FromArgMatches;
        let m = command()
            .try_get_matches_from([
                "cutover",
                "--coordinator",
                "https://c:1",
                "validate",
                "web.toml",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.client.coordinator.as_deref(), Some("https://c:1"));
        assert!(matches!(cli.command, Command::Validate { .. }));
        // After a local command too (the hidden stand-ins): parsed, not a
        // panic (clap panicked reading a stand-in typed apart from the
        // real option).
        for local in [
            &["validate", "web.toml"][..],
            &["config", "check"],
            &["completions", "bash"],
            &["ca", "fingerprint"],
        ] {
            for flag in ["--coordinator", "--ca", "--identity", "--cli-config"] {
                let mut argv = vec!["cutover"];
                argv.extend(local.iter());
                argv.extend([flag, "https://c:1"]);
                match command().try_get_matches_from(&argv) {
                    Ok(m) => {
                        let _ = Cli::from_arg_matches(&m);
                    }
                    // A command that needs other arguments says so.
                    Err(e) => assert_ne!(
                        e.kind(),
                        clap::error::ErrorKind::UnknownArgument,
                        "{argv:?}: {e}"
                    ),
                }
            }
        }
    }

    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name());
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path}: {id}"));
            }
        }
        if cmd.get_about().is_none() && cmd.get_long_about().is_none() && path != " cutover" {
            out.push(format!("{path}: (command)"));
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &path, out);
        }
    }

    #[test]
    fn the_packaged_manual_pages_and_completions_are_those_of_this_build() {
        let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
        let stale = cutover_common::cli_docs::stale_in(command(), &packaging);
        assert!(
            stale.is_empty(),
            "stale (make them again: `cutover man --dir packaging/man/cutover` and \
             `cutover completions SHELL > packaging/completions/cutover.SHELL`):\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn every_command_option_and_argument_says_what_it_is() {
        let mut out = Vec::new();
        undocumented(&Cli::command(), "", &mut out);
        assert!(out.is_empty(), "without a description:\n{}", out.join("\n"));
    }
}
