//! An attacker's view of a cluster set up the documented way: anonymous
//! floods, idle connections, stale and revoked certificates, forged
//! commands, oversized reports and descriptor exhaustion. Each test is one
//! finding of issue 24, and failed on the code before it.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_common::pki::{self, TlsIdentity};
use cutover_common::tls::{self, ChannelOptions};
use cutover_proto::v1 as pb;
use cutover_tests::{Cluster, CoordinatorOptions, poll};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes of the coordinator's store on disk (database and its WAL).
fn store_bytes(c: &Cluster) -> u64 {
    std::fs::read_dir(c.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".db"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn from(ip: &str) -> ChannelOptions {
    ChannelOptions {
        source: Some(ip.parse().unwrap()),
        ..ChannelOptions::default()
    }
}

async fn enroll_client(
    url: &str,
    fp: &str,
    opts: ChannelOptions,
) -> pb::enroll_service_client::EnrollServiceClient<tonic::transport::Channel> {
    let cfg = tls::enroll_client_config(tls::PinnedCaVerifier::new(
        pki::parse_fingerprint(fp).unwrap(),
    ))
    .unwrap();
    let ch = tls::connect(url, cfg, opts).await.unwrap();
    pb::enroll_service_client::EnrollServiceClient::new(ch)
}

#[test]
fn an_enrollment_flood_is_turned_away_before_it_costs_disk_or_log() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    let (_, fp) = c.token("role=web", "10m", 1).unwrap();
    let url = c.url();
    let before = store_bytes(&c);
    let log = c.coordinator.as_ref().unwrap().log.clone();
    let log_before = std::fs::metadata(&log).unwrap().len();
    let codes = rt().block_on(async {
        let mut tasks = Vec::new();
        for t in 0..4 {
            let mut cl = enroll_client(&url, &fp, from("127.0.0.3")).await;
            tasks.push(tokio::spawn(async move {
                let mut codes = Vec::new();
                for i in 0..250 {
                    // Half with a 50 KB host id, half well formed with a
                    // token the coordinator never made.
                    let host_id = if i % 2 == 0 {
                        "h".repeat(50_000)
                    } else {
                        format!("flood-{t}-{i}")
                    };
                    let r = cl
                        .enroll(pb::EnrollRequest {
                            token: format!("cutover1.{}.{}", "a".repeat(16), "b".repeat(48)),
                            host_id,
                            csr_der: vec![0; 512],
                            agent_version: "x".repeat(2_000),
                        })
                        .await;
                    codes.push(r.unwrap_err().code());
                }
                codes
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(codes.len(), 1000);
    let throttled = codes
        .iter()
        .filter(|c| **c == tonic::Code::ResourceExhausted)
        .count();
    // A source gets ten refusals, then is turned away before any work.
    assert!(throttled >= 980, "{throttled} of 1000 throttled: {codes:?}");
    // Disk: a few rows, not a row per attempt with 60 KB in it (the
    // WAL grows by whole pages, so allow a little).
    let grown = store_bytes(&c).saturating_sub(before);
    assert!(grown < 256 * 1024, "the store grew by {grown} bytes");
    let logged = std::fs::metadata(&log).unwrap().len() - log_before;
    assert!(logged < 256 * 1024, "the log grew by {logged} bytes");
    // The audit log answers, every row bounded.
    let r = c.cutover(&["audit", "--limit", "100", "-o", "json"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.len() < 100 * 1024, "{} bytes", r.stdout.len());
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let denied = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "host.enroll" && r["outcome"] == "denied")
        .count();
    assert!(
        (1..=20).contains(&denied),
        "{denied} denied rows for 1000 attempts"
    );
    // A real host, from its own address, enrolls at once.
    let (token, fp) = c.token("role=web", "10m", 1).unwrap();
    let r = c.enroll("web-1", &token, &fp, "").unwrap();
    assert!(r.ok, "{}", r.stderr);
}

/// A TLS connection without a client certificate, handshake done, then
/// silent, dialled from `source`.
fn idle_anonymous(addr: SocketAddr, source: IpAddr, fp: &str) -> Option<IdleTls> {
    let cfg = tls::enroll_client_config(tls::PinnedCaVerifier::new(
        pki::parse_fingerprint(fp).unwrap(),
    ))
    .unwrap();
    let sock = socket2_like::bind_connect(source, addr)?;
    let name =
        rustls::pki_types::ServerName::try_from(cutover_common::identity::COORDINATOR_SERVER_NAME)
            .unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut sock = sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    Some(IdleTls { conn, sock })
}

struct IdleTls {
    conn: rustls::ClientConnection,
    sock: TcpStream,
}

impl IdleTls {
    /// Whether the server has closed it (without blocking long).
    fn closed(&mut self) -> bool {
        self.sock
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let _ = self.conn.read_tls(&mut &buf[..n]);
                    if self.conn.process_new_packets().is_err() {
                        return true;
                    }
                    let mut plain = [0u8; 4096];
                    let _ = self.conn.reader().read(&mut plain);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

mod socket2_like {
    use std::net::{IpAddr, SocketAddr, TcpStream};

    /// A TCP connection to `addr` from `source` (std has no bind-then-
    /// connect; tokio's socket does it, then hands the stream back).
    pub fn bind_connect(source: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().ok()?;
            s.bind(SocketAddr::new(source, 0)).ok()?;
            let t = s.connect(addr).await.ok()?;
            let std = t.into_std().ok()?;
            std.set_nonblocking(false).ok()?;
            Some(std)
        })
    }
}

#[test]
fn idle_connections_without_a_certificate_cannot_hold_enrolment() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    let (token, fp) = c.token("role=web", "10m", 1).unwrap();
    let addr: SocketAddr = c.addr.parse().unwrap();
    // 64 idle connections from one address: the first 16 are kept (for
    // now), the rest closed at once.
    let mut idle: Vec<IdleTls> = (0..64)
        .filter_map(|_| idle_anonymous(addr, "127.0.0.2".parse().unwrap(), &fp))
        .collect();
    assert!(idle.len() >= 16, "{} handshakes", idle.len());
    let open_after_cap = poll(
        "the connections past 16 to be closed",
        Duration::from_secs(10),
        || {
            let open = idle.iter_mut().map(|t| !t.closed()).filter(|o| *o).count();
            (open <= 16).then_some(open)
        },
    );
    assert!(open_after_cap <= 16);
    // A host from another address enrolls while they are open.
    let started = Instant::now();
    let r = c.enroll("web-1", &token, &fp, "").unwrap();
    assert!(r.ok, "{}", r.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "enrolling took {:?}",
        started.elapsed()
    );
    // And none stays open for long while silent.
    poll(
        "every idle connection to be closed",
        Duration::from_secs(20),
        || idle.iter_mut().all(|t| t.closed()).then_some(()),
    );
}

#[test]
fn a_stale_host_certificate_cannot_take_over_a_host_enrolled_again() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.add_agent("h2", "role=web", "").unwrap();
    c.wait_state("h2", "ready", Duration::from_secs(20));
    let ident = c.agent("h2").state_dir.join("identity");
    let stale = TlsIdentity::load_bundle(&ident.join("host.pem")).unwrap();
    let ca_certs = pki::load_certs(&ident.join("ca.crt")).unwrap();
    c.agent("h2").proc.as_mut().unwrap().stop();
    let r = c.cutover(&["hosts", "remove", "h2"]);
    assert!(r.ok, "{}", r.stderr);
    // Enrolled again, with a new key.
    std::fs::remove_dir_all(&ident).unwrap();
    let (token, fp) = c.token("role=web", "10m", 1).unwrap();
    let r = c.enroll("h2", &token, &fp, "").unwrap();
    assert!(r.ok, "{}", r.stderr);
    c.start_agent("h2").unwrap();
    c.wait_state("h2", "ready", Duration::from_secs(20));
    let url = c.url();
    rt().block_on(async {
        let cfg = tls::client_config(&ca_certs, Some(&stale)).unwrap();
        let ch = tls::connect(&url, cfg, ChannelOptions::default())
            .await
            .unwrap();
        let mut agent = pb::agent_service_client::AgentServiceClient::new(ch);
        let hello = pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                host_id: "h2".into(),
                agent_version: "0.1.0".into(),
                ..Default::default()
            })),
        };
        let e = agent
            .session(tokio_stream::iter(vec![hello]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("is not this host's"),
            "{}",
            e.message()
        );
    });
    assert!(c.audited("session.open", "denied", "is not this host's"));
    // The real agent kept its session.
    let h = c.host("h2").unwrap();
    assert_eq!(h["state"], "ready", "{h:#}");
    let log = c.agent("h2").proc.as_ref().unwrap().log_text();
    assert!(!log.contains("session ended"), "{log}");
}

#[test]
fn a_revoked_or_superseded_operator_certificate_is_refused_after_a_restart_too() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.issue_operator("ops", "deployer").unwrap();
    let ops_dir = c.pki_dir().join("operators");
    assert!(c.cutover_as("ops", &["whoami"]).ok);
    // Re-issued: the first certificate is superseded.
    std::fs::copy(ops_dir.join("ops.pem"), c.dir.path().join("ops-first.pem")).unwrap();
    c.issue_operator("ops", "deployer").unwrap();
    let first = c.dir.path().join("ops-first.pem");
    let r = c.cutover_as("ops", &["whoami", "--identity", first.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(r.stderr.contains("superseded"), "{}", r.stderr);
    assert!(c.cutover_as("ops", &["whoami"]).ok);
    // Revoked by name: every certificate of it, on the running coordinator.
    let config = c.config.clone();
    let revoke = |args: &[&str]| {
        let mut all = vec![
            "ca",
            "revoke-operator",
            "--config",
            config.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = std::process::Command::new(cutover_tests::bin("cutover"))
            .args(&all)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let said = revoke(&["--name", "ops"]);
    assert!(said.contains("1 valid certificate(s) revoked"), "{said}");
    let r = c.cutover_as("ops", &["whoami"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    // After a restart, still refused; the audit log says who revoked.
    c.coordinator.as_mut().unwrap().kill();
    c.start_coordinator().unwrap();
    let r = c.cutover_as("ops", &["whoami"]);
    assert!(!r.ok);
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    assert!(c.audited("operator.revoke", "ok", "revoked"));
    // Issued again: the new certificate works, the old ones never again.
    c.issue_operator("ops", "viewer").unwrap();
    assert!(c.cutover_as("ops", &["whoami"]).ok);
    let r = c.cutover_as("ops", &["whoami", "--identity", first.to_str().unwrap()]);
    assert!(!r.ok, "{}", r.stdout);
    // One certificate by serial.
    let serial = c
        .audit()
        .into_iter()
        .find(|a| a["action"] == "operator.issue" && a["target"] == "ops")
        .and_then(|a| {
            a["detail"]
                .as_str()?
                .split_whitespace()
                .skip_while(|w| *w != "serial")
                .nth(1)
                .map(str::to_string)
        })
        .expect("the newest issue of ops is audited with its serial");
    let said = revoke(&["--serial", &serial]);
    assert!(said.contains("revoked"), "{said}");
    assert!(!c.cutover_as("ops", &["whoami"]).ok);
}

#[test]
fn operators_cannot_set_epochs_or_name_a_rollouts_commands() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.add_agent("web-1", "role=web", "").unwrap();
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    c.issue_operator("dep", "deployer").unwrap();
    let ca_certs = pki::load_certs(&c.pki_dir().join("ca.crt")).unwrap();
    let admin = TlsIdentity::load_bundle(&c.pki_dir().join("operators/admin.pem")).unwrap();
    let dep = TlsIdentity::load_bundle(&c.pki_dir().join("operators/dep.pem")).unwrap();
    let url = c.url();
    let undrain = |id: &str, epoch: u64, deployment: &str| pb::SendCommandRequest {
        host_id: "web-1".into(),
        command: Some(pb::Command {
            command_id: id.into(),
            deployment_id: deployment.into(),
            step: 0,
            epoch,
            term: 0,
            kind: Some(pb::command::Kind::Undrain(pb::UndrainCommand {
                service: "web".into(),
            })),
        }),
        timeout_ms: 10_000,
    };
    rt().block_on(async {
        let connect = |id: TlsIdentity| {
            let (url, ca) = (url.clone(), ca_certs.clone());
            async move {
                let cfg = tls::client_config(&ca, Some(&id)).unwrap();
                let ch = tls::connect(&url, cfg, ChannelOptions::default())
                    .await
                    .unwrap();
                pb::control_service_client::ControlServiceClient::new(ch)
            }
        };
        let mut a = connect(admin).await;
        // The epoch that poisoned a service for good.
        let e = a.send_command(undrain("", 1 << 63, "")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("command.epoch"), "{}", e.message());
        let e = a.send_command(undrain("", 0, "d1")).await.unwrap_err();
        assert!(
            e.message().contains("command.deployment_id"),
            "{}",
            e.message()
        );
        // A rollout's id is namespaced: it names an operator's command.
        let mut events = a
            .send_command(undrain("d1-activate-0", 0, ""))
            .await
            .unwrap()
            .into_inner();
        let result = loop {
            match events.message().await.unwrap().expect("a result").event {
                Some(pb::command_event::Event::Result(r)) => break r,
                _ => continue,
            }
        };
        assert_eq!(result.command_id, "op-d1-activate-0");
        // The same id again with another command: refused by the agent,
        // not answered with the first one's result.
        let mut events = a
            .send_command(pb::SendCommandRequest {
                host_id: "web-1".into(),
                command: Some(pb::Command {
                    command_id: "d1-activate-0".into(),
                    kind: Some(pb::command::Kind::Drain(pb::DrainCommand {
                        service: "web".into(),
                        stop: true,
                    })),
                    ..Default::default()
                }),
                timeout_ms: 10_000,
            })
            .await
            .unwrap()
            .into_inner();
        let again = loop {
            match events.message().await.unwrap().expect("a result").event {
                Some(pb::command_event::Event::Result(r)) => break r,
                _ => continue,
            }
        };
        assert!(!again.ok);
        assert!(
            again
                .message
                .contains("already used for a different command"),
            "{}",
            again.message
        );
        // Stage, activate and rollback on one host are an admin's.
        let mut d = connect(dep).await;
        let e = d
            .send_command(pb::SendCommandRequest {
                host_id: "web-1".into(),
                command: Some(pb::Command {
                    kind: Some(pb::command::Kind::Rollback(pb::RollbackCommand {
                        service: "web".into(),
                        to_release_id: String::new(),
                    })),
                    ..Default::default()
                }),
                timeout_ms: 1000,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        // A deployer's undrain works, and epochs stay the coordinator's.
        let mut events = d
            .send_command(undrain("", 0, ""))
            .await
            .unwrap()
            .into_inner();
        while let Some(ev) = events.message().await.unwrap() {
            if let Some(pb::command_event::Event::Result(r)) = ev.event {
                assert!(r.command_id.starts_with("op-"), "{}", r.command_id);
                break;
            }
        }
    });
    assert!(c.audited("command.reused_id", "denied", "op-d1-activate-0"));
    let journal = c.agent("web-1").state_dir.join("journal");
    assert!(!journal.join("d1-activate-0.json").exists());
    assert!(journal.join("op-d1-activate-0.json").exists());
    let epochs = std::fs::read_to_string(journal.join("epochs.json")).unwrap_or_default();
    assert!(!epochs.contains("9223372036854775808"), "{epochs}");
}

#[test]
fn a_huge_health_report_from_one_host_is_refused_and_harms_nobody() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.add_agent("web-1", "role=web", "").unwrap();
    let (token, fp) = c.token("role=web", "10m", 1).unwrap();
    // A host whose key the attacker holds: enrolled, its own agent not
    // running.
    assert!(c.enroll("evil", &token, &fp, "").unwrap().ok);
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    let ident = c.agent("evil").state_dir.join("identity");
    let id = TlsIdentity::load_bundle(&ident.join("host.pem")).unwrap();
    let ca_certs = pki::load_certs(&ident.join("ca.crt")).unwrap();
    let url = c.url();
    let refusals = rt().block_on(async {
        let cfg = tls::client_config(&ca_certs, Some(&id)).unwrap();
        let ch = tls::connect(&url, cfg, ChannelOptions::default())
            .await
            .unwrap();
        let mut agent = pb::agent_service_client::AgentServiceClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let mut labels = std::collections::HashMap::new();
        labels.insert("environment".to_string(), "production".to_string());
        tx.send(pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                host_id: "evil".into(),
                agent_version: "0.1.0".into(),
                labels,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut inbound = agent
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut refusals = Vec::new();
        for i in 0..3 {
            tx.send(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Health(pb::HealthReport {
                    service: "web".into(),
                    status: "serving".into(),
                    drift: vec!["x".repeat(1 << 10); 1 << 10],
                    release: format!("r{i}"),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        }
        while refusals.len() < 3 {
            let m = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .expect("an answer")
                .unwrap()
                .expect("the session stays open");
            if let Some(pb::coordinator_message::Body::Refusal(r)) = m.body {
                refusals.push(r.reason);
            }
        }
        refusals
    });
    assert!(
        refusals[0].contains("health report refused"),
        "{refusals:?}"
    );
    let r = c.cutover(&["hosts", "-o", "json"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.len() < 64 * 1024, "{} bytes", r.stdout.len());
    // A label only a token may bind was not taken from the host.
    let evil = c.host("evil").unwrap();
    assert!(evil["labels"].get("environment").is_none(), "{evil:#}");
    let r = c.cutover(&[
        "hosts",
        "--selector",
        "environment=production",
        "-o",
        "json",
    ]);
    assert!(r.ok);
    assert_eq!(r.stdout.trim(), "[]");
}

#[test]
fn validate_refuses_durations_and_sizes_past_their_bounds() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, field) in [
        (
            "[swap]\nmin_ready = \"100000000000years\"\n",
            "swap.min_ready",
        ),
        (
            "[logs]\nmax_bytes = 18446744073709551615\n",
            "logs.max_bytes",
        ),
    ] {
        let spec = dir.path().join("web.toml");
        std::fs::write(
            &spec,
            format!(
                "service = \"web\"\n{extra}[run]\ncommand = [\"bin/web\"]\n[targets]\nselector = \"role=web\"\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(cutover_tests::bin("cutover"))
            .args(["validate"])
            .arg(&spec)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{field}: accepted");
        assert!(err.contains(field), "{err}");
        assert!(err.contains("at most") || err.contains("between"), "{err}");
    }
}

/// Raises this process's own descriptor limit (the coordinator and agents
/// it already started keep theirs).
fn raise_own_nofile(n: u64) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let max = l.maximum.unwrap_or(u64::MAX);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(n.min(max)),
            maximum: l.maximum,
        },
    )
    .unwrap();
}

fn descriptors_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn idle_connections_to_the_plain_http_ports_cannot_exhaust_descriptors() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.add_agent("web-1", "role=web", "").unwrap();
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    // Both daemons run with systemd's default soft limit of 1024.
    let agent_pid = c.agent("web-1").proc.as_ref().unwrap().child.id();
    let coord_pid = c.coordinator.as_ref().unwrap().child.id();
    for pid in [agent_pid, coord_pid] {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let soft: u64 = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap();
        if soft > 4096 {
            eprintln!("note: pid {pid} may open {soft} files; the limit case is not reached");
        }
    }
    raise_own_nofile(8192);
    let readiness = c.agent("web-1").readiness.clone().unwrap();
    let metrics = std::fs::read_to_string(c.state_dir().join("metrics.addr"))
        .unwrap()
        .trim()
        .to_string();
    let mut held = Vec::new();
    for addr in [&readiness, &metrics] {
        for _ in 0..1100 {
            if let Ok(s) = TcpStream::connect(addr.as_str()) {
                held.push(s);
            }
        }
    }
    assert!(held.len() >= 2000, "{} connections made", held.len());
    // Both daemons hold a bounded number of descriptors...
    poll(
        "the connections past the cap to be closed",
        Duration::from_secs(10),
        || (descriptors_of(agent_pid) < 600 && descriptors_of(coord_pid) < 600).then_some(()),
    );
    // ...and keep working: the agent journals and runs commands, the
    // coordinator answers operators.
    let r = c.cutover(&["drain", "web-1", "--service", "web"]);
    let journal = c.agent("web-1").state_dir.join("journal");
    let journaled = std::fs::read_dir(&journal)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("op-"))
        })
        .unwrap_or(false);
    assert!(journaled, "no command journaled: {} {}", r.stdout, r.stderr);
    let r = c.cutover(&["hosts"]);
    assert!(r.ok, "{}", r.stderr);
    // Idle ones are closed; the endpoints answer again.
    drop(held);
    let (status, _) = poll(
        "the readiness endpoint to answer",
        Duration::from_secs(20),
        || cutover_tests::http_get(&readiness, "/ready/web"),
    );
    assert!(status == 200 || status == 503 || status == 404, "{status}");
    assert!(c.metrics().1.contains("cutover_"));
}

/// The mode the shipped agent unit gives the directory its state lives in.
fn shipped_state_directory_mode() -> u32 {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd/cutover-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let mode = text
        .lines()
        .find_map(|l| l.strip_prefix("StateDirectoryMode="))
        .expect("the unit sets StateDirectoryMode");
    u32::from_str_radix(mode.trim(), 8).unwrap()
}

fn deploy_watch(
    c: &Cluster,
    spec: &std::path::Path,
    a: &cutover_tests::release::Artifact,
) -> (cutover_tests::Run, i32) {
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(cutover_tests::bin("cutover"))
        .args([
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            "1",
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
            "--watch",
        ])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (out.into(), code)
}

fn uid_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_non_root_run_user_deploys_under_the_shipped_directory_modes_and_root_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: starting apps as another user needs root (CI runs as root)");
        return;
    }
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    // The test's temporary root stands for / and /var/lib, which any user
    // may traverse; the directory holding agents' state gets the unit's
    // StateDirectoryMode, as /var/lib/cutover does on a host.
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let agents = c.dir.path().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::set_permissions(
        &agents,
        std::fs::Permissions::from_mode(shipped_state_directory_mode()),
    )
    .unwrap();
    // The default policy, but for artifacts from files (the test's).
    c.add_agent_with(
        "web-1",
        "role=web",
        "",
        None,
        "[policy]\nartifact_schemes = [\"file\"]\n",
    )
    .unwrap();
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    let a = cutover_tests::release::demo_tarball(c.dir.path(), "demo.tar");
    let spec = |user: &str| {
        let p = c.dir.path().join(format!(
            "web-{}.toml",
            if user.is_empty() { "root" } else { user }
        ));
        std::fs::write(
            &p,
            format!(
                "service = \"web\"\n[run]\ncommand = [\"bin/demo-service\", \"--app-version\", \"1\"]\n{user}\n[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[swap]\nmin_ready = \"300ms\"\nready_timeout = \"5s\"\n[strategy]\nkind = \"rolling\"\nhealthy_deadline = \"20s\"\n[targets]\nselector = \"role=web\"\n"
            ),
        )
        .unwrap();
        p
    };
    // No run.user on an agent running as root: refused, and said so.
    let (r, code) = deploy_watch(&c, &spec(""), &a);
    assert_ne!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let id = r
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "deployment")
        .nth(1)
        .expect("a deployment id")
        .to_string();
    let status = c.cutover(&["status", &id]);
    let shown = format!("{}{}", status.stdout, status.stderr);
    assert!(shown.contains("refused by this host's policy"), "{shown}");
    assert!(shown.contains("run.user is unset"), "{shown}");
    // As nobody: it runs, as nobody.
    let (r, code) = deploy_watch(&c, &spec("user = \"nobody\""), &a);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let pids = cutover_tests::processes_under(c.dir.path());
    let uids: Vec<u32> = pids
        .iter()
        .filter_map(|p| {
            let cmdline = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            cmdline
                .contains("demo-service")
                .then(|| uid_of(*p))
                .flatten()
        })
        .collect();
    assert!(!uids.is_empty(), "no app process found");
    assert!(uids.iter().all(|u| *u == 65534), "{uids:?}");
}
