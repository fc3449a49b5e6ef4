//! A real HAProxy (Debian's package) in front of a test fleet, health
//! checking each agent's readiness endpoint (`GET /ready/web`) as
//! docs/load-balancers.md sets it up, with its admin socket for the test
//! to read what HAProxy thinks of each server. Stopped when dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::fleet::TestFleet;

/// A running HAProxy.
pub struct Haproxy {
    child: std::process::Child,
    pub addr: SocketAddr,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// What HAProxy thinks of a server (`srv_op_state`).
pub const RUNNING: u8 = 2;

impl Haproxy {
    /// Starts HAProxy with backend `be` of every host of `f`. `server`
    /// is added to each server line (check timing: "" keeps HAProxy's
    /// defaults, inter 2s fall 3 rise 2), `defaults` to the defaults
    /// section (e.g. "option redispatch").
    pub fn start(f: &TestFleet, server: &str, defaults: &str) -> Haproxy {
        let lb = Self::spawn(f, server, defaults);
        lb.wait_serving();
        lb
    }

    /// Waits until HAProxy answers a request through a server.
    pub fn wait_serving(&self) {
        let addr = self.addr.to_string();
        crate::poll("haproxy serving", Duration::from_secs(20), || {
            crate::http_get(&addr, "/").filter(|(s, _)| *s == 200)
        });
    }

    /// [`Haproxy::start`] without waiting for a server to answer.
    pub fn spawn(f: &TestFleet, server: &str, defaults: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::release::free_port();
        let socket = dir.path().join("admin.sock");
        let servers: String = (0..f.hosts.len())
            .map(|i| {
                let (app, ready) = (f.addr(i), f.readiness(i));
                let check = ready.rsplit(':').next().unwrap();
                format!(
                    "  server {} {app} check port {check} {server}\n",
                    f.hosts[i].id
                )
            })
            .collect();
        let cfg = format!(
            "global\n  maxconn 2000\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  {defaults}\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
             backend be\n  option httpchk GET /ready/web\n  http-check expect status 200\n{servers}",
            socket.display()
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting haproxy");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let lb = Haproxy {
            child,
            addr,
            socket,
            _dir: dir,
        };
        crate::poll("haproxy's admin socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&lb.socket).ok()
        });
        lb
    }

    /// The admin socket's path (for a switch command).
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Runs one command on the admin socket and returns its answer.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)
            .expect("connecting to haproxy's admin socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Each server of backend `be` and its `srv_op_state` (0 stopped,
    /// 2 running).
    pub fn states(&self) -> BTreeMap<String, u8> {
        self.command("show servers state be")
            .lines()
            .filter(|l| !l.starts_with('#') && l.split_whitespace().count() > 6)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f[3].to_string(), f[5].parse().ok()?))
            })
            .collect()
    }

    /// Sessions each server of `be` has had (`stot` of `show stat`).
    pub fn sessions(&self) -> BTreeMap<String, u64> {
        self.command("show stat")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() > 7 && f[0] == "be" && f[1] != "BACKEND")
                    .then(|| Some((f[1].to_string(), f[7].parse().ok()?)))
                    .flatten()
            })
            .collect()
    }

    /// Waits until HAProxy has server `name` in `state`.
    pub fn wait_state(&self, name: &str, running: bool, timeout: Duration) {
        crate::poll(
            &format!(
                "haproxy to mark {name} {}",
                if running { "up" } else { "down" }
            ),
            timeout,
            || {
                let s = self.states().get(name).copied()?;
                ((s == RUNNING) == running).then_some(())
            },
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
