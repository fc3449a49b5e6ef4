//! The end-to-end harness: starts the real `cutover` and `cutover-agent`
//! binaries in a temporary directory, talks to them as an operator would,
//! and removes everything at teardown (also when a test panics).
//!
//! Binaries are found next to the test executable's `deps/` directory
//! (`target/<profile>/`), or in `CUTOVER_BIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod apps;
pub mod artifacts;
pub mod fleet;
pub mod ha;
pub mod haproxy;
pub mod load;
pub mod netns;
pub mod release;
use serde_json::Value;

/// Where the binaries under test are.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CUTOVER_BIN_DIR") {
        return d.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Path of a binary under test; panics with how to build it.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`), or set CUTOVER_BIN_DIR",
        p.display()
    );
    p
}

/// Whether `program` (a real component users run: gunicorn, HAProxy,
/// Prometheus; or a packaging tool such as cargo-deb) is installed. `.ci/run` installs them from Debian's
/// packages and sets `CUTOVER_REQUIRE_REAL=1`, so that there a missing one
/// fails the test instead of skipping it; on a machine without them the
/// test says it was skipped and why.
pub fn real_component(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CUTOVER_REQUIRE_REAL").as_deref() != Ok("1"),
            "{program} is required here (CUTOVER_REQUIRE_REAL=1) but not installed"
        );
        eprintln!(
            "skipped: {program} is not installed (`.ci/run` installs it from Debian's packages)"
        );
    }
    found
}

/// The `cutover` and `cutover-agent` binaries of the previous release
/// (the commit in `tests/compat/previous`), as `.ci/build-previous` builds
/// them into `target/compat/<commit>/` (or `CUTOVER_PREVIOUS_BIN_DIR`).
/// None, saying so, when they have not been built: the mixed-version tests
/// are then skipped (`.ci/run` builds them).
pub fn previous_release() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = match std::env::var_os("CUTOVER_PREVIOUS_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let text = std::fs::read_to_string(root.join("tests/compat/previous")).ok()?;
            let commit = text
                .lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())?;
            root.join("target/compat").join(commit.trim())
        }
    };
    let (c, a) = (dir.join("cutover"), dir.join("cutover-agent"));
    if c.is_file() && a.is_file() {
        Some((c, a))
    } else {
        eprintln!(
            "skipped: the previous release is not built in {} (`.ci/build-previous` builds it)",
            dir.display()
        );
        None
    }
}

/// Whether Debian's python3 (`/usr/bin/python3`, which Debian's gunicorn
/// runs on) has `module` (a library real apps use, such as
/// `prometheus_client`); skipped or required as [`real_component`].
pub fn real_python_module(module: &str) -> bool {
    let found = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CUTOVER_REQUIRE_REAL").as_deref() != Ok("1"),
            "python3's {module} is required here (CUTOVER_REQUIRE_REAL=1) but not installed"
        );
        eprintln!(
            "skipped: python3's {module} is not installed (`.ci/run` installs it from Debian's packages)"
        );
    }
    found
}

/// Whether the agents of this machine steer clients away from a new
/// instance until it is ready: they need `net.ipv4.tcp_migrate_req`, on
/// already or turned on by an agent running as root (as CI does).
/// Elsewhere a swap shares the old instance's socket, as documented, and
/// the tests check that fallback instead (and say so).
pub fn swaps_are_steered() -> bool {
    let on = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .is_ok_and(|v| v.trim() == "1");
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    if !(on || root) {
        eprintln!(
            "swaps are not steered here (not root, net.ipv4.tcp_migrate_req off): checking the shared-socket fallback"
        );
    }
    on || root
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed at drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its exit status once it has ended (a signal: None).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("CUTOVER_LOG", "info")
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    Ok(Proc {
        child,
        log: log.into(),
    })
}

/// The text of a finished command, for assertions.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

/// `cutover-agent`, run inside network namespace `netns` when given
/// (`ip netns exec` execs it: the child's pid is the agent's).
pub fn agent_command(netns: Option<&str>) -> Command {
    agent_command_of(netns, None)
}

/// [`agent_command`] with another `cutover-agent` binary when given.
pub fn agent_command_of(netns: Option<&str>, binary: Option<&Path>) -> Command {
    let exe = || {
        binary
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bin("cutover-agent"))
    };
    match (netns, binary) {
        (Some(ns), _) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe());
            c
        }
        (None, Some(b)) => Command::new(b),
        (None, None) => wrapped("CUTOVER_TEST_AGENT_WRAPPER", "cutover-agent"),
    }
}

/// `name`, run under the command in environment variable `var` if set. For
/// profiling benchmarks: e.g. `valgrind --tool=massif
/// --massif-out-file=/tmp/massif.out`.
pub(crate) fn wrapped(var: &str, name: &str) -> Command {
    match std::env::var(var) {
        Ok(w) if !w.trim().is_empty() => {
            let mut parts = w.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(bin(name));
            c
        }
        _ => Command::new(bin(name)),
    }
}

/// Processes whose working directory is under `dir`: the app instances
/// agents started there.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid as u32 != std::process::id())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Kills every process whose working directory is under `dir`: the app
/// instances agents started there, which by design outlive their agent.
pub fn kill_processes_under(dir: &Path) {
    for pid in processes_under(dir) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            if let Some(p) = a.proc.as_mut() {
                p.kill();
            }
        }
        kill_processes_under(self.dir.path());
    }
}

/// Options for a test coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub host_timeout: &'static str,
    pub heartbeat_interval: &'static str,
    pub host_cert_ttl: &'static str,
    pub session_ticket_lifetime: &'static str,
    /// Address to listen on (default 127.0.0.1; a namespaced fleet's gateway).
    pub listen_ip: Option<String>,
    /// Another `cutover` binary to run the coordinator with (and `ca
    /// init`): a previous release's, for mixed-version tests.
    pub binary: Option<PathBuf>,
    /// More of coordinator.toml (tables such as `[notify]`), appended.
    pub extra_config: String,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            host_timeout: "3s",
            heartbeat_interval: "500ms",
            host_cert_ttl: "1h",
            session_ticket_lifetime: "24h",
            listen_ip: None,
            binary: None,
            extra_config: String::new(),
        }
    }
}

/// A coordinator and its agents in one temporary directory.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub coordinator: Option<Proc>,
    pub addr: String,
    pub agents: Vec<Agent>,
    opts: CoordinatorOptions,
    /// Another `cutover-agent` binary for the agents added while this is
    /// set: a previous release's, for mixed-version tests.
    pub agent_binary: Option<PathBuf>,
    /// What the CLI is given as its coordinator(s), when not this
    /// cluster's one URL (several coordinators: a comma-separated list).
    pub client_urls: Option<String>,
}

/// One enrolled agent.
#[derive(Debug)]
pub struct Agent {
    /// The network namespace it runs in, if any.
    pub netns: Option<String>,
    /// Where its readiness endpoint listens.
    pub readiness: Option<String>,
    pub host_id: String,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub proc: Option<Proc>,
    /// Its `cutover-agent` binary, when not this tree's.
    pub binary: Option<PathBuf>,
}

impl Cluster {
    /// Creates a CA and starts a coordinator on a free port.
    pub fn start(opts: CoordinatorOptions) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("cutover-e2e-").tempdir()?;
        let config = dir.path().join("coordinator.toml");
        let mut c = Cluster {
            config,
            dir,
            coordinator: None,
            addr: String::new(),
            agents: Vec::new(),
            opts,
            agent_binary: None,
            client_urls: None,
        };
        let ip = c
            .opts
            .listen_ip
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into());
        c.write_config(&format!("{ip}:0"))?;
        let r: Run = match &c.opts.binary {
            Some(b) => Command::new(b)
                .args(["ca", "init", "--config", c.config.to_str().unwrap()])
                .env("HOME", c.dir.path())
                .output()?
                .into(),
            None => c.cutover_local(&["ca", "init", "--config", c.config.to_str().unwrap()])?,
        };
        if !r.ok {
            bail!("ca init failed: {}", r.stderr);
        }
        c.start_coordinator()?;
        Ok(c)
    }

    fn write_config(&self, listen: &str) -> Result<()> {
        let text = format!(
            "state_dir = \"{}\"\nlisten = \"{listen}\"\nmetrics_listen = \"127.0.0.1:0\"\nhost_timeout = \"{}\"\nheartbeat_interval = \"{}\"\nhost_cert_ttl = \"{}\"\nsession_ticket_lifetime = \"{}\"\n",
            self.state_dir().display(),
            self.opts.host_timeout,
            self.opts.heartbeat_interval,
            self.opts.host_cert_ttl,
            self.opts.session_ticket_lifetime,
        ) + &self.opts.extra_config;
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    /// A scrape of the coordinator's `/metrics`: every sample as
    /// (series with labels, value), and the raw text.
    pub fn metrics(&self) -> (Vec<(String, f64)>, String) {
        // Just restarted, the coordinator writes metrics.addr a moment
        // after it listens: the old file names the old port till then.
        let (status, body) = poll("a scrape of /metrics", Duration::from_secs(20), || {
            let addr = std::fs::read_to_string(self.state_dir().join("metrics.addr")).ok()?;
            http_get_with(addr.trim(), "/metrics", OPENMETRICS)
        });
        assert_eq!(status, 200, "{body}");
        (parse_openmetrics(&body), body)
    }

    /// One sample of the coordinator's `/metrics` (`series` with its
    /// labels), or None while it cannot be scraped (restarting) or has no
    /// such series yet.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let addr = std::fs::read_to_string(self.state_dir().join("metrics.addr")).ok()?;
        let (status, body) = http_get_with(addr.trim(), "/metrics", OPENMETRICS)?;
        if status != 200 {
            return None;
        }
        parse_openmetrics(&body)
            .into_iter()
            .find(|(k, _)| k == series)
            .map(|(_, v)| v)
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.state_dir().join("pki")
    }

    /// The coordinator's URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Starts (or restarts) `cutover serve`, keeping the port it had.
    pub fn start_coordinator(&mut self) -> Result<()> {
        let addr_file = self.state_dir().join("listen.addr");
        if !self.addr.is_empty() {
            self.write_config(&self.addr.clone())?;
        }
        let _ = std::fs::remove_file(&addr_file);
        let log = self.dir.path().join(format!(
            "coordinator-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let mut cmd = match &self.opts.binary {
            Some(b) => Command::new(b),
            None => wrapped("CUTOVER_TEST_COORDINATOR_WRAPPER", "cutover"),
        };
        let mut p = spawn_logged(cmd.args(["serve", "--config"]).arg(&self.config), &log)?;
        let addr = poll("coordinator to listen", Duration::from_secs(20), || {
            if !p.is_running() {
                panic!("coordinator exited: {}", p.log_text());
            }
            std::fs::read_to_string(&addr_file)
                .ok()
                .map(|s| s.trim().to_string())
        });
        self.addr = addr;
        self.coordinator = Some(p);
        Ok(())
    }

    /// Environment that makes the CLI act as operator `name`.
    pub fn operator_env(&self, name: &str) -> Vec<(String, String)> {
        vec![
            (
                "CUTOVER_CLI_CONFIG".into(),
                self.pki_dir()
                    .join("operators")
                    .join(format!("{name}.toml"))
                    .display()
                    .to_string(),
            ),
            (
                "CUTOVER_COORDINATOR".into(),
                self.client_urls.clone().unwrap_or_else(|| self.url()),
            ),
        ]
    }

    fn cutover_local(&self, args: &[&str]) -> Result<Run> {
        Ok(Command::new(bin("cutover"))
            .args(args)
            .env("HOME", self.dir.path())
            .output()?
            .into())
    }

    /// Runs `cutover ARGS` as operator `admin`.
    pub fn cutover(&self, args: &[&str]) -> Run {
        self.cutover_as("admin", args)
    }

    /// Runs `cutover ARGS` as operator `name`.
    pub fn cutover_as(&self, name: &str, args: &[&str]) -> Run {
        Command::new(bin("cutover"))
            .args(args)
            .env("HOME", self.dir.path())
            .envs(self.operator_env(name))
            .output()
            .expect("running cutover")
            .into()
    }

    /// Issues an operator certificate.
    pub fn issue_operator(&self, name: &str, role: &str) -> Result<()> {
        let r = self.cutover_local(&[
            "ca",
            "issue-operator",
            "--config",
            self.config.to_str().unwrap(),
            "--name",
            name,
            "--role",
            role,
        ])?;
        if !r.ok {
            bail!("issue-operator failed: {}", r.stderr);
        }
        Ok(())
    }

    /// Creates a join token; returns (token, CA fingerprint).
    pub fn token(&self, labels: &str, ttl: &str, uses: u32) -> Result<(String, String)> {
        let r = self.cutover(&[
            "token",
            "create",
            "--labels",
            labels,
            "--ttl",
            ttl,
            "--uses",
            &uses.to_string(),
            "-o",
            "json",
        ]);
        if !r.ok {
            bail!("token create failed: {}", r.stderr);
        }
        let v: Value = serde_json::from_str(&r.stdout)?;
        Ok((
            v["token"].as_str().context("token")?.to_string(),
            v["ca_fingerprint"]
                .as_str()
                .context("fingerprint")?
                .to_string(),
        ))
    }

    /// Writes an agent config and enrolls it; does not start it.
    pub fn enroll(
        &mut self,
        host_id: &str,
        token: &str,
        fingerprint: &str,
        agent_labels: &str,
    ) -> Result<Run> {
        self.enroll_in(host_id, token, fingerprint, agent_labels, None)
    }

    /// [`Cluster::enroll`], the agent running in network namespace `netns`.
    pub fn enroll_in(
        &mut self,
        host_id: &str,
        token: &str,
        fingerprint: &str,
        agent_labels: &str,
        netns: Option<&str>,
    ) -> Result<Run> {
        self.enroll_with(host_id, token, fingerprint, agent_labels, netns, "")
    }

    /// [`Cluster::enroll_in`] with `extra` lines appended to the agent's
    /// config.
    pub fn enroll_with(
        &mut self,
        host_id: &str,
        token: &str,
        fingerprint: &str,
        agent_labels: &str,
        netns: Option<&str>,
        extra: &str,
    ) -> Result<Run> {
        let extra = if extra.contains("readiness_listen") {
            extra.to_string()
        } else {
            format!(
                "readiness_listen = \"127.0.0.1:{}\"\n{extra}",
                crate::release::free_port()
            )
        };
        let state_dir = self.dir.path().join("agents").join(host_id);
        std::fs::create_dir_all(&state_dir)?;
        let config = self.dir.path().join(format!("agent-{host_id}.toml"));
        let labels: Vec<String> = agent_labels
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("k=v");
                format!("\"{k}\" = \"{v}\"")
            })
            .collect();
        // Test hosts let deployments do what the tests need (apps as the
        // test's user, which is root in CI; artifacts from files; env files
        // from temporary directories), unless a test sets its own policy.
        let policy = if extra.contains("[policy]") {
            ""
        } else {
            "\n[policy]\nallow_root = true\nartifact_schemes = [\"https\", \"http\", \"file\"]\nenv_file_dirs = [\"/\"]\n"
        };
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nreconnect_initial = \"100ms\"\nreconnect_max = \"1s\"\nlabels = {{ {} }}\n{extra}{policy}",
                state_dir.display(),
                labels.join(", "),
            ),
        )?;
        let token_file = self.dir.path().join(format!("token-{host_id}"));
        std::fs::write(&token_file, token)?;
        let r: Run = agent_command_of(netns, self.agent_binary.as_deref())
            .args(["enroll", "--config"])
            .arg(&config)
            .args(["--coordinator", &self.url(), "--token-file"])
            .arg(&token_file)
            .args(["--ca-fingerprint", fingerprint, "--host-id", host_id])
            .output()?
            .into();
        if r.ok {
            let text = std::fs::read_to_string(&config)?;
            let readiness = text
                .lines()
                .find_map(|l| l.strip_prefix("readiness_listen = "))
                .map(|v| v.trim_matches('"').to_string());
            self.agents.push(Agent {
                netns: netns.map(str::to_string),
                readiness,
                host_id: host_id.into(),
                config,
                state_dir,
                proc: None,
                binary: self.agent_binary.clone(),
            });
        }
        Ok(r)
    }

    /// Starts (or restarts) the agent of `host_id`.
    pub fn start_agent(&mut self, host_id: &str) -> Result<()> {
        let dir = self.dir.path().to_path_buf();
        let a = self
            .agents
            .iter_mut()
            .find(|a| a.host_id == host_id)
            .context("no such agent")?;
        let log = dir.join(format!(
            "agent-{host_id}-{}.log",
            cutover_common::time::now_ms()
        ));
        a.proc = Some(spawn_logged(
            agent_command_of(a.netns.as_deref(), a.binary.as_deref())
                .args(["run", "--config"])
                .arg(&a.config),
            &log,
        )?);
        Ok(())
    }

    /// The agent of `host_id`.
    pub fn agent(&mut self, host_id: &str) -> &mut Agent {
        self.agents
            .iter_mut()
            .find(|a| a.host_id == host_id)
            .expect("no such agent")
    }

    /// Enrolls and starts `host_id` with a fresh single-use token.
    pub fn add_agent(
        &mut self,
        host_id: &str,
        token_labels: &str,
        agent_labels: &str,
    ) -> Result<()> {
        self.add_agent_in(host_id, token_labels, agent_labels, None)
    }

    /// [`Cluster::add_agent`] in network namespace `netns`.
    pub fn add_agent_in(
        &mut self,
        host_id: &str,
        token_labels: &str,
        agent_labels: &str,
        netns: Option<&str>,
    ) -> Result<()> {
        self.add_agent_with(host_id, token_labels, agent_labels, netns, "")
    }

    /// [`Cluster::add_agent_in`] with `extra` agent config lines.
    pub fn add_agent_with(
        &mut self,
        host_id: &str,
        token_labels: &str,
        agent_labels: &str,
        netns: Option<&str>,
        extra: &str,
    ) -> Result<()> {
        let (token, fp) = self.token(token_labels, "10m", 1)?;
        let r = self.enroll_with(host_id, &token, &fp, agent_labels, netns, extra)?;
        if !r.ok {
            bail!("enroll {host_id} failed: {}", r.stderr);
        }
        self.start_agent(host_id)
    }

    /// (host, active release of its first service) of every host, as
    /// `cutover hosts` says.
    pub fn releases(&self) -> Vec<(String, String)> {
        self.hosts()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap_or_default().to_string(),
                    h["services"][0]["active_release"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// `cutover hosts -o json`.
    pub fn hosts(&self) -> Vec<Value> {
        let r = self.cutover(&["hosts", "-o", "json"]);
        assert!(r.ok, "cutover hosts failed: {}", r.stderr);
        serde_json::from_str::<Value>(&r.stdout)
            .expect("hosts JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The host entry of `host_id` from `cutover hosts -o json`.
    pub fn host(&self, host_id: &str) -> Option<Value> {
        self.hosts().into_iter().find(|h| h["host"] == host_id)
    }

    /// `cutover hosts -o json`, or None when no coordinator answers (one
    /// restarting, a change of leader).
    pub fn try_hosts(&self) -> Option<Vec<Value>> {
        let r = self.cutover(&["hosts", "-o", "json"]);
        if !r.ok {
            return None;
        }
        serde_json::from_str::<Value>(&r.stdout)
            .ok()?
            .as_array()
            .cloned()
    }

    /// Waits until `host_id` is in `state`.
    pub fn wait_state(&self, host_id: &str, state: &str, timeout: Duration) -> Value {
        // Ready to deploy to: connected too (a restarted coordinator shows
        // hosts stored as ready before their agents reconnect).
        poll(&format!("{host_id} to be {state}"), timeout, || {
            self.try_hosts()?
                .into_iter()
                .find(|h| h["host"] == host_id)
                .filter(|h| h["state"] == state && (state != "ready" || !h["session"].is_null()))
        })
    }

    /// `cutover audit -o json`.
    pub fn audit(&self) -> Vec<Value> {
        let r = self.cutover(&["audit", "--limit", "500", "-o", "json"]);
        assert!(r.ok, "cutover audit failed: {}", r.stderr);
        serde_json::from_str::<Value>(&r.stdout)
            .expect("audit JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the audit log has an entry with this action and outcome
    /// whose detail contains `needle`.
    pub fn audited(&self, action: &str, outcome: &str, needle: &str) -> bool {
        self.audit().iter().any(|e| {
            e["action"] == action
                && e["outcome"] == outcome
                && e["detail"].as_str().unwrap_or("").contains(needle)
        })
    }
}

/// What Prometheus asks a target for.
pub const OPENMETRICS: &str = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

/// A plain HTTP/1.1 GET to a test address; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_with(addr, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
pub fn http_get_with(addr: &str, path: &str, headers: &str) -> Option<(u16, String)> {
    http_get_within(addr, path, headers, Duration::from_secs(5))
}

/// [`http_get_with`], giving up after `limit` to connect and `limit` to
/// read (None).
pub fn http_get_within(
    addr: &str,
    path: &str,
    headers: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let to = addr.to_socket_addrs().ok()?.next()?;
    let mut s = std::net::TcpStream::connect_timeout(&to, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Samples of an OpenMetrics text: (series, value). Panics on a line that
/// is neither a comment nor `series value`, or a text without `# EOF`.
pub fn parse_openmetrics(text: &str) -> Vec<(String, f64)> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not `series value`: {l:?}"));
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (series.to_string(), v)
        })
        .collect()
}
