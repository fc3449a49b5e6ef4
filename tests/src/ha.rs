//! Several coordinators sharing one PostgreSQL store (high availability):
//! a throwaway cluster from Debian's `postgresql`, the first coordinator
//! made by [`Cluster::start`] (CA, operators) and more beside it, each
//! with its own state directory and the first one's PKI directory (the
//! directory an operator syncs between them).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use cutover_common::throwaway_pg::ThrowawayPg;
use serde_json::Value;

use crate::release::Artifact;
use crate::{Cluster, CoordinatorOptions, Proc, poll, spawn_logged, wrapped};

/// One coordinator of several.
#[derive(Debug)]
pub struct Coord {
    pub name: String,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// host:port, kept across restarts.
    pub addr: String,
    pub proc: Option<Proc>,
    starts: u32,
}

impl Coord {
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// Coordinators on one PostgreSQL store, with the cluster's agents.
#[derive(Debug)]
pub struct Ha {
    pub c: Cluster,
    pub coords: Vec<Coord>,
    pub pg: ThrowawayPg,
}

/// The leader as `cutover coordinators` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub index: usize,
    pub term: u64,
}

impl Ha {
    /// `n` coordinators (the first leads) with a leader lease of `lease`;
    /// None when PostgreSQL is not installed (skipped, unless
    /// `CUTOVER_REQUIRE_REAL=1`).
    pub fn start(n: usize, lease: &str, mut opts: CoordinatorOptions) -> Option<Ha> {
        let pg = ThrowawayPg::start_or_skip()?;
        pg.create_db("cutover");
        let store = format!(
            "store = \"{}\"\nstore_password_file = \"{}\"\nleader_lease = \"{lease}\"\n",
            pg.url("cutover"),
            pg.password_file().display()
        );
        opts.extra_config = format!("{store}name = \"c1\"\n{}", opts.extra_config);
        let mut c = Cluster::start(opts).expect("first coordinator");
        let first = Coord {
            name: "c1".into(),
            config: c.config.clone(),
            state_dir: c.state_dir(),
            addr: c.addr.clone(),
            proc: c.coordinator.take(),
            starts: 1,
        };
        let mut ha = Ha {
            coords: vec![first],
            c,
            pg,
        };
        let listen_ip = ha.coords[0]
            .addr
            .rsplit_once(':')
            .map(|(ip, _)| ip.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        for i in 2..=n {
            let text = std::fs::read_to_string(&ha.coords[0].config).unwrap();
            let state_dir = ha.c.dir.path().join(format!("coordinator-{i}"));
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("state_dir = ") {
                        format!(
                            "state_dir = \"{}\"\npki_dir = \"{}\"",
                            state_dir.display(),
                            ha.c.pki_dir().display()
                        )
                    } else if l.starts_with("listen = ") {
                        // The first one's address (a namespaced fleet's
                        // gateway, or loopback), another port.
                        format!("listen = \"{listen_ip}:0\"")
                    } else if l.starts_with("name = ") {
                        format!("name = \"c{i}\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
            let config = ha.c.dir.path().join(format!("coordinator-{i}.toml"));
            std::fs::write(&config, text).unwrap();
            ha.coords.push(Coord {
                name: format!("c{i}"),
                config,
                state_dir,
                addr: String::new(),
                proc: None,
                starts: 0,
            });
            ha.start_coordinator(i - 1).expect("starting a standby");
        }
        ha.c.client_urls = Some(ha.urls().join(","));
        Some(ha)
    }

    /// Every coordinator's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.coords.iter().map(Coord::url).collect()
    }

    /// Agent config lines naming every coordinator.
    pub fn agent_config(&self) -> String {
        let list: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!("coordinators = [{}]\n", list.join(", "))
    }

    /// Starts (or restarts, on the same port) coordinator `i`.
    pub fn start_coordinator(&mut self, i: usize) -> Result<()> {
        let co = &mut self.coords[i];
        if !co.addr.is_empty() {
            let text = std::fs::read_to_string(&co.config)?;
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("listen = ") {
                        format!("listen = \"{}\"", co.addr)
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
            std::fs::write(&co.config, text)?;
        }
        let addr_file = co.state_dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        co.starts += 1;
        let log = self
            .c
            .dir
            .path()
            .join(format!("{}-{}.log", co.name, co.starts));
        let mut p = spawn_logged(
            wrapped("CUTOVER_TEST_COORDINATOR_WRAPPER", "cutover")
                .args(["serve", "--config"])
                .arg(&co.config),
            &log,
        )?;
        let addr = poll("the coordinator to listen", Duration::from_secs(20), || {
            if !p.is_running() {
                panic!("coordinator {} exited: {}", co.name, p.log_text());
            }
            std::fs::read_to_string(&addr_file)
                .ok()
                .map(|s| s.trim().to_string())
        });
        co.addr = addr;
        co.proc = Some(p);
        Ok(())
    }

    /// The leader and its term, as `cutover coordinators` (following the
    /// leader from any of them) reports it, once one leads.
    /// What systemd's `Restart=on-failure` does for a leader that stepped
    /// down (exit 75, e.g. starved of CPU past its lease on a loaded test
    /// machine): it comes back as a standby. Called by the waits.
    pub fn restart_stepped_down(&mut self) {
        for i in 0..self.coords.len() {
            let stepped_down = self.coords[i]
                .proc
                .as_mut()
                .is_some_and(|p| !p.is_running() && p.exit_code() == Some(75));
            if stepped_down {
                eprintln!(
                    "{} stepped down: started again as a standby",
                    self.coords[i].name
                );
                self.start_coordinator(i).expect("restarting a coordinator");
            }
        }
    }

    /// Starts coordinator `i` again unless it runs (it may have stepped
    /// down and been started again already).
    pub fn start_if_stopped(&mut self, i: usize) {
        let running = self.coords[i].proc.as_mut().is_some_and(|p| p.is_running());
        if !running {
            self.start_coordinator(i)
                .expect("starting a coordinator again");
        }
    }

    pub fn leader(&mut self, timeout: Duration) -> Leader {
        let start = std::time::Instant::now();
        loop {
            self.restart_stepped_down();
            if let Some(l) = self.leader_now() {
                return l;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for a leader:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader and its term now, if one answers.
    fn leader_now(&self) -> Option<Leader> {
        {
            let r = self.c.cutover(&["coordinators", "-o", "json"]);
            if !r.ok {
                return None;
            }
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            let term = v["term"].as_u64()?;
            let addr = v["coordinators"]
                .as_array()?
                .iter()
                .find(|m| m["leader"] == true)?["address"]
                .as_str()?
                .to_string();
            let index = self.coords.iter().position(|c| c.url() == addr)?;
            Some(Leader { index, term })
        }
    }

    /// Waits until every agent has a session with the leader (after a
    /// failover, before the next deployment: a leader only deploys to
    /// hosts connected to it).
    pub fn wait_agents(&mut self) {
        // A leader may step down meanwhile (a loaded machine): brought
        // back as its service manager would, and asked again.
        let ids: Vec<String> = self.c.agents.iter().map(|a| a.host_id.clone()).collect();
        poll("every agent ready", Duration::from_secs(60), || {
            self.restart_stepped_down();
            let hosts = self.c.try_hosts()?;
            ids.iter()
                .all(|id| {
                    hosts.iter().any(|h| {
                        h["host"] == id.as_str() && h["state"] == "ready" && !h["session"].is_null()
                    })
                })
                .then_some(())
        });
    }

    /// Submits the deployment of `version` from spec file `spec` with
    /// artifact `a` through the CLI (following the leader); its id.
    pub fn submit(&self, spec: &std::path::Path, version: &str, a: &Artifact) -> String {
        // As a pipeline does (docs/operator-guide.md): with a request id,
        // so that a submit cut off by a change of leader is tried again
        // and started once.
        let request_id = format!("ha-{version}-{}", rand::random::<u32>());
        let start = std::time::Instant::now();
        loop {
            let r = self.c.cutover(&[
                "deploy",
                spec.to_str().unwrap(),
                "--version",
                version,
                "--artifact",
                &a.url,
                "--sha256",
                &a.sha256,
                "--request-id",
                &request_id,
                "-o",
                "json",
            ]);
            let unavailable = [
                "unavailable",
                "standby",
                "Connection refused",
                "transport error",
                "not the leader",
            ]
            .iter()
            .any(|w| r.stderr.contains(w));
            if !r.ok && unavailable && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
            assert!(r.ok, "deploy {version}: {}\n{}", r.stderr, self.logs());
            let v: Value = serde_json::from_str(&r.stdout).expect("deploy -o json");
            return v["id"].as_str().expect("an id").to_string();
        }
    }

    /// `cutover coordinators -o json`.
    pub fn members(&self) -> Result<Value> {
        let r = self.c.cutover(&["coordinators", "-o", "json"]);
        anyhow::ensure!(r.ok, "cutover coordinators: {}", r.stderr);
        serde_json::from_str(&r.stdout).context("coordinators JSON")
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to coordinator `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.coords[i].proc.as_ref().expect("running").child.id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Every coordinator's logs so far (for a failing test's message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.c.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('c') && name.ends_with(".log") {
                out.push_str(&format!(
                    "==== {name}\n{}\n",
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }
}
