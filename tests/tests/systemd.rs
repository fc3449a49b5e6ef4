//! The agent and coordinator as systemd services, against a notify socket
//! this test listens on (systemd is installed here but is not PID 1): the
//! unit files pass `systemd-analyze verify`; the agent says `READY=1`,
//! pings the watchdog, keeps its listening sockets in the fd store, takes
//! them back from `LISTEN_FDS` after a crash (with no app left to take
//! them from, and clients waiting in the queue meanwhile), and says
//! `STOPPING=1`.

use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use cutover_tests::release::{Control, activate, demo_spec, demo_tarball, free_port, stage};
use cutover_tests::{Cluster, CoordinatorOptions, bin, poll, processes_under};

/// A notify socket, as systemd would hold it.
struct Manager {
    sock: UnixDatagram,
    path: PathBuf,
}

/// One datagram: its text and the descriptors it carried.
struct Message {
    text: String,
    fds: Vec<OwnedFd>,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Manager { sock, path }
    }

    fn recv(&self) -> Option<Message> {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let r = rustix::net::recvmsg(
            &self.sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .ok()?;
        let mut fds = Vec::new();
        for m in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
                fds.extend(it);
            }
        }
        Some(Message {
            text: String::from_utf8_lossy(&buf[..r.bytes]).into_owned(),
            fds,
        })
    }

    /// Waits for a message containing `needle`; returns it.
    fn expect(&self, needle: &str, timeout: Duration) -> Message {
        self.wait_for(needle, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, with what was seen instead if it does not come.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<Message, String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < timeout {
            if let Some(m) = self.recv() {
                if m.text.contains(needle) {
                    return Ok(m);
                }
                seen.push(m.text);
            }
        }
        Err(format!("no `{needle}` within {timeout:?}; got: {seen:?}"))
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the enrolled agent of `c` as systemd would: notify socket,
/// watchdog, and the fd store handed back as `LISTEN_FDS` (named).
fn start_agent(c: &Cluster, m: &Manager, store: Vec<(String, OwnedFd)>, log: &Path) -> Agent {
    let config = c.agents[0].config.clone();
    let names: Vec<String> = store.iter().map(|(n, _)| n.clone()).collect();
    let mappings: Vec<FdMapping> = store
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    let mut cmd = Command::new("sh");
    // LISTEN_PID must be the agent's own pid: `exec` keeps the shell's.
    cmd.arg("-c")
        .arg("export LISTEN_PID=$$; exec \"$0\" \"$@\"")
        .arg(bin("cutover-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &m.path)
        .env("WATCHDOG_USEC", "1000000")
        .env("CUTOVER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    if !names.is_empty() {
        cmd.env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
        cmd.fd_mappings(mappings).unwrap();
    }
    Agent(cmd.spawn().unwrap())
}

#[test]
fn the_agent_speaks_the_notify_protocol_and_keeps_its_sockets_in_the_fd_store() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    let (token, fp) = c.token("role=web", "10m", 1).unwrap();
    assert!(c.enroll("web-1", &token, &fp, "").unwrap().ok);
    let m = Manager::new(c.dir.path());
    let log = c.dir.path().join("agent-1.log");
    let agent = start_agent(&c, &m, Vec::new(), &log);

    // Ready once recovered and connected, with a status line.
    let ready = m.expect("READY=1", Duration::from_secs(30));
    assert!(
        ready.text.contains("STATUS=connected to"),
        "{:?}",
        ready.text
    );
    // Watchdog pings (WATCHDOG_USEC = 1 s: every 500 ms).
    m.expect("WATCHDOG=1", Duration::from_secs(5));

    // A service: its listener goes to the fd store under `web.http`.
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    let mut control = Control::connect(&c);
    let a = demo_tarball(c.dir.path(), "demo.tar");
    let port = free_port();
    let spec = demo_spec("web", port, "1", &[]);
    assert!(control.send("web-1", stage("s1", "v1", "1", &a, &spec)).ok);
    let r = control.send("web-1", activate("a1", "web", "v1"));
    assert!(r.ok, "{}", r.message);
    let stored = m.expect("FDSTORE=1", Duration::from_secs(10));
    assert!(stored.text.contains("FDNAME=web.http"), "{:?}", stored.text);
    assert_eq!(stored.fds.len(), 1);
    let fd = stored.fds.into_iter().next().unwrap();
    let addr = rustix::net::getsockname(&fd).unwrap();
    let addr = SocketAddr::try_from(addr).unwrap();
    assert_eq!(addr.port(), port, "the stored socket is the service's");

    // The agent crashes, and its app dies too: only the fd store (this
    // test) holds the socket now. A client still connects: it waits in
    // the queue instead of being refused.
    drop(agent);
    let state_dir = c.agents[0].state_dir.clone();
    for pid in processes_under(&state_dir) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    poll("the app gone", Duration::from_secs(10), || {
        processes_under(&state_dir).is_empty().then_some(())
    });
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).expect("queued, not refused");
    waiting
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();

    // systemd restarts the agent and hands the store back.
    let log2 = c.dir.path().join("agent-2.log");
    let agent = start_agent(&c, &m, vec![("web.http".into(), fd)], &log2);
    m.expect("READY=1", Duration::from_secs(30));
    // The waiting client is answered by the app the agent started again
    // on the very same socket.
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("version=1"), "{answer:?}");
    let text = std::fs::read_to_string(&log2).unwrap_or_default()
        + &std::fs::read_to_string(log2.with_extension("err")).unwrap_or_default();
    assert!(
        text.contains("took the listening socket back from the systemd fd store"),
        "{text}"
    );

    // A clean stop says so.
    let pid = agent.0.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    m.expect("STOPPING=1", Duration::from_secs(30));
    drop(agent);
}

#[test]
fn the_coordinator_says_ready_once_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::new(dir.path());
    let state = dir.path().join("state");
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
            state.display()
        ),
    )
    .unwrap();
    let init = Command::new(bin("cutover"))
        .args(["ca", "init", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let log = dir.path().join("coordinator.log");
    let child = Command::new(bin("cutover"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &m.path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Agent(child);
    let pid = child.0.id();
    // If it does not come, what the coordinator said and whether it still
    // runs are what tell why.
    let mut expect = |needle: &str| {
        m.wait_for(needle, Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\ncoordinator {:?}, its log:\n{}",
                    child.0.try_wait(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
    };
    let ready = expect("READY=1");
    assert!(
        ready
            .text
            .contains("STATUS=listening on https://127.0.0.1:"),
        "{:?}",
        ready.text
    );
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    expect("STOPPING=1");
    let _ = child.0.wait();
}

/// `systemd-analyze verify` in a throwaway root holding the units, the
/// binaries where the units expect them, and systemd's own units. It
/// exits 0 on unknown keys, so any output at all is a failure.
fn verify(unit_text: &str, name: &str) -> (bool, String) {
    verify_with(unit_text, name, None)
}

/// [`verify`], with a drop-in (file name, text) for the unit.
fn verify_with(unit_text: &str, name: &str, dropin: Option<(&str, &str)>) -> (bool, String) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let units = r.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    if let Some((file, text)) = dropin {
        let d = units.join(format!("{name}.d"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(file), text).unwrap();
    }
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    std::fs::write(units.join(name), unit_text).unwrap();
    for b in ["cutover", "cutover-agent"] {
        std::fs::copy(bin(b), r.join("usr/bin").join(b)).unwrap();
    }
    let cp = Command::new("cp")
        .args(["-a", "/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(cp.success());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg(format!("/etc/systemd/system/{name}"))
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.trim().is_empty(), text)
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/systemd")
            .join(name),
    )
    .unwrap()
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    // systemd's tools: on any Debian with systemd (`.ci/run` requires
    // them); a machine without is skipped, saying so.
    if !cutover_tests::real_component("systemd-analyze") {
        return;
    }
    for name in ["cutover-agent.service", "cutover-coordinator.service"] {
        let text = unit(name);
        let (ok, out) = verify(&text, name);
        assert!(ok, "{name}:\n{out}");
    }
    // The check can fail: a misspelt key is caught.
    let broken = unit("cutover-agent.service").replace("WatchdogSec=", "WatchdogSecs=");
    let (ok, out) = verify(&broken, "cutover-agent.service");
    assert!(!ok && out.contains("WatchdogSecs"), "{out}");
}

#[test]
fn the_haproxy_drop_in_for_the_coordinator_passes_systemd_analyze_verify() {
    if !cutover_tests::real_component("systemd-analyze") {
        return;
    }
    let dropin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/examples/cutover-coordinator-haproxy.conf"),
    )
    .unwrap();
    assert!(dropin.contains("SupplementaryGroups=haproxy"));
    let unit_text = unit("cutover-coordinator.service");
    let name = "cutover-coordinator.service";
    let (ok, out) = verify_with(&unit_text, name, Some(("haproxy.conf", &dropin)));
    assert!(ok, "{out}");
    // The drop-in is read: a misspelt key in it is caught.
    let broken = dropin.replace("SupplementaryGroups=", "SupplementaryGroupz=");
    let (ok, out) = verify_with(&unit_text, name, Some(("haproxy.conf", &broken)));
    assert!(!ok && out.contains("SupplementaryGroupz"), "{out}");
}

#[test]
fn the_agent_unit_keeps_apps_alive_and_the_sockets_stored() {
    let text = unit("cutover-agent.service");
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "KillMode=process",
        "Restart=on-failure",
        "FileDescriptorStoreMax=",
        "ExecStartPre=/usr/bin/cutover-agent config check",
        "WatchdogSec=",
    ] {
        assert!(text.contains(want), "missing {want}");
    }
    // The stop timeout covers a default drain (swap.grace = 30 s).
    let stop: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop}s");
}
