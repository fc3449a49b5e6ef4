//! A test fleet: several hosts, each with its own address, a real
//! `cutover-agent` with its own state directory, a real `cutover serve`,
//! and the demo service released as a tarball served over HTTP.
//!
//! Where the machine allows it (root, `ip netns`), every host is its own
//! network namespace on a bridge (198.18.X.0/24, no route out). Otherwise
//! the hosts share the loopback interface, each on its own 127.A.B.x
//! address (the agent's `service_ip`), and partitions are simulated by
//! stopping the agent (SIGSTOP). The mode that ran is printed. Everything
//! is removed on drop, also when a test fails.
//!
//! ```no_run
//! # use cutover_tests::fleet::TestFleet;
//! let f = TestFleet::builder().hosts(4).start();
//! let spec = f.spec("2", &[], "kind = \"rolling\"", "");
//! let (run, code) = f.deploy(&spec, "2");
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::artifacts::ArtifactServer;
use crate::load::{self, Load};
use crate::netns::NetFleet;
use crate::release::{Artifact, demo_tarball};
use crate::{Cluster, CoordinatorOptions, Run, poll};

/// Where every host's readiness endpoint listens (on the host's address).
pub const READINESS_PORT: u16 = 7444;

/// How the hosts are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One network namespace per host.
    Namespaces,
    /// Hosts share loopback, each on its own 127.A.B.x address.
    Loopback,
}

/// Builds a [`TestFleet`].
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    hosts: usize,
    mode: Option<Mode>,
    labels: Vec<String>,
    host_timeout: &'static str,
}

/// One host of the fleet.
#[derive(Debug, Clone)]
pub struct FleetHost {
    pub id: String,
    pub ip: IpAddr,
    /// Its network namespace (namespace mode).
    pub netns: Option<String>,
}

/// A running fleet.
#[derive(Debug)]
pub struct TestFleet {
    pub mode: Mode,
    pub cluster: Cluster,
    pub hosts: Vec<FleetHost>,
    /// The demo service's port, the same on every host.
    pub port: u16,
    /// The demo service release, served over HTTP.
    pub artifact: Artifact,
    _artifacts: ArtifactServer,
    // Dropped after the cluster (declaration order): processes first, then
    // the network under them.
    net: Option<NetFleet>,
    loopback_lock: Option<PathBuf>,
}

impl FleetBuilder {
    /// Number of hosts (web-1 .. web-N).
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n;
        self
    }

    /// Forces a mode (default: namespaces where possible, else loopback;
    /// `CUTOVER_TEST_FLEET=loopback|namespaces` forces one too).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Token labels of host `i` (0-based), `role=web` by default.
    pub fn labels(mut self, i: usize, labels: &str) -> Self {
        if self.labels.len() <= i {
            self.labels.resize(i + 1, "role=web".into());
        }
        self.labels[i] = labels.into();
        self
    }

    /// How long the coordinator waits before calling a silent host lost.
    pub fn host_timeout(mut self, t: &'static str) -> Self {
        self.host_timeout = t;
        self
    }

    /// Brings the fleet up: every host enrolled and ready.
    pub fn start(self) -> TestFleet {
        let forced =
            self.mode.or_else(
                || match std::env::var("CUTOVER_TEST_FLEET").ok().as_deref() {
                    Some("loopback") => Some(Mode::Loopback),
                    Some("namespaces") => Some(Mode::Namespaces),
                    _ => None,
                },
            );
        let mut net = None;
        let mut why_not = String::new();
        if forced != Some(Mode::Loopback) {
            match NetFleet::create(self.hosts) {
                Ok(n) => net = Some(n),
                Err(e) if forced == Some(Mode::Namespaces) => {
                    panic!("network namespaces were asked for but are unavailable: {e}")
                }
                Err(e) => why_not = e,
            }
        }
        let (mode, ips, gateway, loopback_lock) = match &net {
            Some(n) => {
                eprintln!(
                    "fleet mode: network namespaces, hosts on 198.18.{}.0/24",
                    n.subnet
                );
                let ips: Vec<IpAddr> = n.hosts.iter().map(|h| h.ip.parse().unwrap()).collect();
                (Mode::Namespaces, ips, n.gateway().parse().unwrap(), None)
            }
            None => {
                let (a, b, lock) = claim_loopback_block();
                eprintln!(
                    "fleet mode: loopback, hosts on 127.{a}.{b}.x{}",
                    if why_not.is_empty() {
                        String::new()
                    } else {
                        format!(" (network namespaces unavailable: {why_not})")
                    }
                );
                let ips = (0..self.hosts)
                    .map(|i| IpAddr::from([127, a, b, 10 + i as u8]))
                    .collect();
                (
                    Mode::Loopback,
                    ips,
                    IpAddr::from([127, 0, 0, 1]),
                    Some(lock),
                )
            }
        };
        let mut cluster = Cluster::start(CoordinatorOptions {
            listen_ip: Some(gateway.to_string()),
            host_timeout: self.host_timeout,
            heartbeat_interval: "500ms",
            ..Default::default()
        })
        .expect("starting the coordinator");
        let mut hosts = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let id = format!("web-{}", i + 1);
            let netns = net.as_ref().map(|n| n.hosts[i].netns.clone());
            let labels = self.labels.get(i).map_or("role=web", String::as_str);
            // The load balancers' readiness endpoint on the host's own
            // address, where the test (acting as the load balancer) reaches it.
            let mut extra = format!("readiness_listen = \"{ip}:{READINESS_PORT}\"\n");
            if mode == Mode::Loopback {
                extra.push_str(&format!("service_ip = \"{ip}\"\n"));
            }
            cluster
                .add_agent_with(&id, labels, "", netns.as_deref(), &extra)
                .unwrap_or_else(|e| panic!("adding {id}: {e:#}"));
            hosts.push(FleetHost { id, ip: *ip, netns });
        }
        for h in &hosts {
            cluster.wait_state(&h.id, "ready", Duration::from_secs(30));
        }
        if mode == Mode::Namespaces {
            // Each agent dials from its own address.
            for h in &hosts {
                let got = cluster.host(&h.id).unwrap();
                assert_eq!(got["address"], h.ip.to_string().as_str(), "{got:#}");
            }
        }
        let mut artifact = demo_tarball(cluster.dir.path(), "demo.tar");
        let server = ArtifactServer::start_on(gateway, cluster.dir.path().to_path_buf());
        artifact.url = server.url("demo.tar");
        TestFleet {
            mode,
            cluster,
            hosts,
            port: 8080,
            artifact,
            _artifacts: server,
            net,
            loopback_lock,
        }
    }
}

/// A block 127.A.B.0/24 of loopback addresses of our own, claimed with a
/// lock file so that fleets running at once never share addresses.
fn claim_loopback_block() -> (u8, u8, PathBuf) {
    for _ in 0..64 {
        let (a, b) = (1 + rand::random::<u8>() % 250, rand::random::<u8>());
        let lock = std::env::temp_dir().join(format!("cutover-loopback-127.{a}.{b}.lock"));
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .is_ok()
        {
            return (a, b, lock);
        }
    }
    panic!("no free loopback block for a test fleet")
}

impl TestFleet {
    pub fn builder() -> FleetBuilder {
        FleetBuilder {
            hosts: 3,
            mode: None,
            labels: Vec::new(),
            host_timeout: "3s",
        }
    }

    /// Host `i`'s readiness endpoint for load balancers.
    pub fn readiness(&self, i: usize) -> String {
        format!("{}:{READINESS_PORT}", self.hosts[i].ip)
    }

    /// Where host `i` (0-based) serves the demo service.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.hosts[i].ip, self.port)
    }

    /// Writes a spec for the demo service at `version`, started with the
    /// extra `flags`, deployed by `strategy` (the body of `[strategy]`),
    /// with `extra` TOML appended (probes, rollback, ...).
    pub fn spec(&self, version: &str, flags: &[&str], strategy: &str, extra: &str) -> PathBuf {
        let mut cmd = vec!["bin/demo-service", "--app-version", version];
        cmd.extend_from_slice(flags);
        let text = format!(
            r#"service = "web"
[run]
command = {cmd:?}
[[listen]]
name = "http"
address = "0.0.0.0:{port}"
[swap]
min_ready = "300ms"
grace = "10s"
ready_timeout = "3s"
[strategy]
{strategy}
[targets]
selector = "role=web"
{extra}
"#,
            port = self.port
        );
        self.spec_text(version, &text)
    }

    fn deploy_args<'a>(&'a self, spec: &'a std::path::Path, version: &'a str) -> Vec<&'a str> {
        vec![
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &self.artifact.url,
            "--sha256",
            &self.artifact.sha256,
        ]
    }

    /// The arguments of `cutover deploy --watch` of the demo service.
    pub fn deploy_args_watch(&self, spec: &std::path::Path, version: &str) -> Vec<String> {
        let mut a: Vec<String> = self
            .deploy_args(spec, version)
            .into_iter()
            .map(String::from)
            .collect();
        a.push("--watch".into());
        a
    }

    /// The server the fleet's artifacts come from.
    pub fn artifacts(&self) -> &crate::artifacts::ArtifactServer {
        &self._artifacts
    }

    /// Packs `files` (path in the release, contents, mode) as a tarball
    /// served like the demo service's: a release of another app.
    pub fn publish(&self, name: &str, files: &[(&str, &str, u32)]) -> Artifact {
        let path = self.cluster.dir.path().join(name);
        let mut b = tar::Builder::new(std::fs::File::create(&path).expect("creating tarball"));
        for (file, text, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, file, text.as_bytes())
                .expect("adding a file");
        }
        b.into_inner().expect("finishing tarball");
        let bytes = std::fs::read(&path).expect("reading tarball");
        Artifact {
            url: self._artifacts.url(name),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            path,
        }
    }

    /// Writes a whole spec (`text`), for another app than the demo service.
    pub fn spec_text(&self, version: &str, text: &str) -> PathBuf {
        let p = self
            .cluster
            .dir
            .path()
            .join(format!("web-{version}-{}.toml", rand::random::<u32>()));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `cutover deploy --watch` of `artifact` (another app's release).
    pub fn deploy_artifact(
        &self,
        spec: &std::path::Path,
        version: &str,
        artifact: &Artifact,
    ) -> (Run, i32) {
        let args = [
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &artifact.url,
            "--sha256",
            &artifact.sha256,
            "--watch",
        ];
        self.watch_cli(&args)
    }

    fn watch_cli(&self, args: &[&str]) -> (Run, i32) {
        let out = std::process::Command::new("timeout")
            .arg("180")
            .arg(crate::bin("cutover"))
            .args(args)
            .env("HOME", self.cluster.dir.path())
            .envs(self.cluster.operator_env("admin"))
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        (out.into(), code)
    }

    /// `cutover deploy --watch`: its output and exit code.
    pub fn deploy(&self, spec: &std::path::Path, version: &str) -> (Run, i32) {
        let mut args = self.deploy_args(spec, version);
        args.push("--watch");
        self.watch_cli(&args)
    }

    /// `cutover deploy` without waiting; panics when it is refused.
    pub fn submit(&self, spec: &std::path::Path, version: &str) -> Run {
        let r = self.cluster.cutover(&self.deploy_args(spec, version));
        assert!(r.ok, "deploy refused:\n{}\n{}", r.stdout, r.stderr);
        r
    }

    /// (host, active release) of every host, as `cutover hosts` says.
    pub fn releases(&self) -> Vec<(String, String)> {
        self.cluster.releases()
    }

    /// Waits until every host reports `version` active.
    pub fn wait_all_on(&self, version: &str) {
        let prefix = format!("{version}-");
        poll(
            &format!("every host on v{version}"),
            Duration::from_secs(20),
            || {
                let r = self.releases();
                (r.len() == self.hosts.len() && r.iter().all(|(_, rel)| rel.starts_with(&prefix)))
                    .then_some(())
            },
        );
    }

    /// Clients on every host (one keep-alive, one opening a connection per
    /// request), started once each has had some answers.
    pub fn load(&self) -> FleetLoad {
        let loads: Vec<Load> = (0..self.hosts.len())
            .map(|i| Load::start(self.addr(i), 1, 1))
            .collect();
        poll("load on every host", Duration::from_secs(20), || {
            loads.iter().all(|l| l.count() > 20).then_some(())
        });
        FleetLoad {
            loads: loads.into_iter().map(Some).collect(),
        }
    }

    /// The `cutover` CLI as the admin operator.
    pub fn cutover(&self, args: &[&str]) -> Run {
        self.cluster.cutover(args)
    }

    /// Cuts host `i` off: its link down (namespaces), or its agent stopped
    /// with SIGSTOP (loopback: the closest a shared interface allows).
    pub fn partition(&mut self, i: usize) {
        match &self.net {
            Some(n) => n.partition(i),
            None => self.signal_agent(i, "-STOP"),
        }
    }

    /// Undoes [`TestFleet::partition`].
    pub fn heal(&mut self, i: usize) {
        match &self.net {
            Some(n) => n.heal(i),
            None => self.signal_agent(i, "-CONT"),
        }
    }

    fn signal_agent(&mut self, i: usize, sig: &str) {
        let id = self.hosts[i].id.clone();
        let pid = self.cluster.agent(&id).proc.as_ref().unwrap().child.id();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        // Let a stopped agent die with the rest.
        if self.net.is_none() {
            for i in 0..self.hosts.len() {
                let id = self.hosts[i].id.clone();
                if let Some(p) = self.cluster.agent(&id).proc.as_ref() {
                    let _ = std::process::Command::new("kill")
                        .args(["-CONT", &p.child.id().to_string()])
                        .status();
                }
            }
        }
        if let Some(l) = &self.loopback_lock {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Clients on every host of a fleet.
#[derive(Debug)]
pub struct FleetLoad {
    loads: Vec<Option<Load>>,
}

impl FleetLoad {
    /// Stops the clients of host `i` only (as a load balancer that took it
    /// out): its records.
    pub fn stop_host(&mut self, i: usize) -> Vec<load::Record> {
        self.loads[i].take().map(Load::stop).unwrap_or_default()
    }

    /// Stops the clients: every record, per host (none for hosts stopped
    /// before).
    pub fn stop(self) -> Vec<Vec<load::Record>> {
        self.loads
            .into_iter()
            .map(|l| l.map(Load::stop).unwrap_or_default())
            .collect()
    }
}
