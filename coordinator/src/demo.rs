//! `cutover demo`: a whole fleet on this machine. A fresh CA, a coordinator
//! (in this process), and agents (real `cutover-agent` processes) that
//! enroll with join tokens and join the fleet. Then real deployments of the
//! demo service: v1, v2 by rolling update with live progress, and a bad v3
//! that crashes on start, which Cutover rolls back by itself. A summary,
//! and a clean stop (or the fleet kept running with `--keep`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cutover_common::labels::{self, Selector};
use cutover_proto::v1 as pb;
use tokio::process::{Child, Command};

use crate::client::{self, Resolved};
use crate::config::CoordinatorConfig;
use crate::output;
use crate::pki_setup;
use crate::server::Server;

/// Options of `cutover demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of agents (hosts) to start.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Keep running this long after the fleet has joined (default: stop once shown).
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub run_for: Option<Duration>,
    /// Keep the fleet running until Ctrl-C and keep its files afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Directory for the demo's files (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The cutover-agent binary (default: next to this one, then PATH).
    #[arg(long, env = "CUTOVER_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
}

fn agent_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let beside = exe.with_file_name("cutover-agent");
    if beside.exists() {
        return Ok(beside);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("cutover-agent");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "cutover-agent not found next to {} or on PATH: build it with `cargo build --release --bins`",
        exe.display()
    )
}

struct DemoAgent {
    host: String,
    child: Child,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    if args.agents == 0 || args.agents > 50 {
        bail!("--agents: expected between 1 and 50");
    }
    let agent_bin = agent_binary(args.agent_bin.clone())?;
    let (_tmp, dir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("cutover-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    println!("Cutover demo in {}", dir.display());

    let cfg = CoordinatorConfig {
        state_dir: dir.join("coordinator"),
        listen: "127.0.0.1:0".parse()?,
        host_timeout: Duration::from_secs(5),
        heartbeat_interval: Duration::from_secs(1),
        ..CoordinatorConfig::default()
    };
    let init = pki_setup::init(&cfg, "demo")?;
    println!(
        "1. created a cluster CA (fingerprint {}…)",
        &init.fingerprint[..23]
    );
    let running = Server::start(cfg).await?;
    println!("2. coordinator listening on {}", running.url);
    // The CLI config was written before the port was chosen: give it the
    // address the coordinator listens on.
    point_cli_config(&init.admin.cli_config, &running.url)?;

    let admin = Resolved {
        url: running.url.clone(),
        ca: init.pki_dir.join(cutover_common::pki::CA_CERT),
        identity: init.admin.bundle.clone(),
    };
    let mut control = client::connect(&admin).await?;
    let zones = ["a", "b", "c"];
    // Every demo host serves on its own loopback address (the agent's
    // `service_ip`), on one port that is free on all of them.
    let host_ips: Vec<std::net::IpAddr> = (0..args.agents)
        .map(|i| std::net::IpAddr::from([127, 0, 0, 10 + i as u8]))
        .collect();
    let port = free_port_on(&host_ips)?;
    let mut agents = Vec::new();
    println!(
        "3. enrolling {} agents with one-time join tokens",
        args.agents
    );
    for i in 1..=args.agents {
        let host = format!("demo-{i}");
        let token = control
            .create_token(pb::CreateTokenRequest {
                request_id: String::new(),
                ttl_ms: 600_000,
                uses: 1,
                labels: [("role".to_string(), "web".to_string())]
                    .into_iter()
                    .collect(),
            })
            .await
            .map_err(crate::cli::status)?
            .into_inner();
        let agent_dir = dir.join("agents").join(&host);
        std::fs::create_dir_all(&agent_dir)?;
        let agent_cfg = agent_dir.join("agent.toml");
        std::fs::write(
            &agent_cfg,
            format!(
                "state_dir = \"{}\"\nlabels = {{ zone = \"{}\" }}\nreconnect_initial = \"200ms\"\nreconnect_max = \"2s\"\nservice_ip = \"{}\"\n\n# The demo runs its sample service as you, from a local file.\n[policy]\nallow_root = true\nartifact_schemes = [\"file\"]\n",
                agent_dir.display(),
                zones[(i - 1) % zones.len()],
                host_ips[i - 1]
            ),
        )?;
        let token_file = agent_dir.join("join-token");
        cutover_common::fsutil::write_atomic(&token_file, token.token.as_bytes(), 0o600)?;
        let out = Command::new(&agent_bin)
            .arg("enroll")
            .arg("--config")
            .arg(&agent_cfg)
            .args(["--coordinator", &running.url, "--token-file"])
            .arg(&token_file)
            .args([
                "--ca-fingerprint",
                &token.ca_fingerprint,
                "--host-id",
                &host,
            ])
            .output()
            .await
            .with_context(|| format!("running {}", agent_bin.display()))?;
        if !out.status.success() {
            bail!(
                "enrolling {host} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_file(&token_file);
        let child = spawn_agent(&agent_bin, &agent_cfg, &agent_dir.join("agent.log"))?;
        agents.push(DemoAgent { host, child });
    }

    let started = Instant::now();
    let mut joined = Vec::new();
    while joined.len() < agents.len() {
        for v in running.app.fleet.list(&Selector::default()) {
            if v.state.as_str() == "ready" && !joined.contains(&v.record.id) {
                println!(
                    "   + {} joined ({}) after {}ms",
                    v.record.id,
                    labels::format(&v.record.labels()),
                    started.elapsed().as_millis()
                );
                joined.push(v.record.id.clone());
            }
        }
        for a in &mut agents {
            if let Ok(Some(status)) = a.child.try_wait() {
                bail!("agent {} exited ({status}) before joining", a.host);
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "agents did not join within 30s; see {}/agents/*/agent.log",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("4. the fleet, as `cutover hosts` shows it:\n");
    let hosts = control
        .list_hosts(pb::ListHostsRequest::default())
        .await
        .map_err(crate::cli::status)?
        .into_inner()
        .hosts;
    let rows: Vec<Vec<String>> = hosts
        .into_iter()
        .map(|h| {
            let l: labels::Labels = h.labels.into_iter().collect();
            vec![
                h.host_id,
                labels::format(&l),
                h.state,
                h.agent_version,
                h.address,
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["HOST", "LABELS", "STATE", "AGENT", "ADDRESS"], &rows)
    );
    println!();

    let mut outcomes = Vec::new();
    let mut traffic: Option<crate::demo_traffic::Traffic> = None;
    let addrs: Vec<std::net::SocketAddr> = host_ips
        .iter()
        .map(|ip| std::net::SocketAddr::new(*ip, port))
        .collect();
    if let Some(service_bin) = demo_service_binary() {
        let artifact = release_tarball(&dir, &service_bin)?;
        let steps: [(&str, &[&str], &str); 3] = [
            (
                "1",
                &[],
                "5. deploying service `web` v1, the demo service (recreate: every host at once)",
            ),
            ("2", &[], "6. rolling update to v2, one host at a time"),
            (
                "3",
                &["--crash-on-start"],
                "7. a bad v3 that crashes on start: Cutover rolls it back by itself",
            ),
        ];
        for (version, flags, title) in steps {
            println!("{title}");
            let strategy = if version == "1" {
                "kind = \"recreate\""
            } else {
                "kind = \"rolling\"\nmax_unavailable = 1"
            };
            let d = control
                .submit_deployment(pb::SubmitDeploymentRequest {
                    spec: Some(pb::SpecRequest {
                        spec_toml: spec_text(version, flags, strategy, port),
                        file_name: format!("demo-v{version}.toml"),
                        version: version.into(),
                        artifact_url: artifact.0.clone(),
                        artifact_sha256: artifact.1.clone(),
                        ..Default::default()
                    }),
                    commit_time_ms: 0,
                    request_id: String::new(),
                    outside_window_reason: String::new(),
                })
                .await
                .map_err(crate::cli::status)?
                .into_inner();
            let reader = traffic.as_ref().map(|t| t.reader());
            let followed = crate::cli::follow_with(
                &mut control,
                &d.id,
                reader
                    .as_ref()
                    .map(|f| f as &(dyn Fn() -> String + Send + Sync)),
            )
            .await;
            let outcome = match followed {
                Ok(()) => "succeeded".to_string(),
                Err(e) => match e.downcast_ref::<crate::cli::DeployOutcome>() {
                    Some(o) => {
                        println!("{}", o.message);
                        // The summary names the deployment already.
                        let prefix = format!("deployment {} ", d.id);
                        o.message
                            .strip_prefix(&prefix)
                            .unwrap_or(&o.message)
                            .to_string()
                    }
                    None => return Err(e),
                },
            };
            outcomes.push((d.id, version, outcome));
            if traffic.is_none() {
                let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}/")).collect();
                println!(
                    "   clients now send requests to every host, all through the next deployments: {}",
                    urls.join(" ")
                );
                traffic = Some(crate::demo_traffic::Traffic::start(&addrs));
            }
            println!();
        }
        println!("8. summary");
        let hosts = control
            .list_hosts(pb::ListHostsRequest::default())
            .await
            .map_err(crate::cli::status)?
            .into_inner()
            .hosts;
        let rows: Vec<Vec<String>> = hosts
            .into_iter()
            .map(|h| {
                let s = h
                    .services
                    .into_iter()
                    .find(|s| s.service == "web")
                    .unwrap_or_default();
                let status = s.health.map(|x| x.status).unwrap_or_default();
                vec![h.host_id, s.active_release, s.previous_release, status]
            })
            .collect();
        print!(
            "{}",
            output::table(&["HOST", "RUNS", "PREVIOUS", "STATUS"], &rows)
        );
        for (id, v, o) in &outcomes {
            println!("  {id}: v{v} {o}");
        }
        if let Some(t) = traffic.take() {
            let counts = t.stop().await;
            println!("  clients during v2 and v3: {}", counts.line());
            if counts.failed_total() > 0 {
                println!(
                    "  (requests failed: see the agents' logs in {}/agents)",
                    dir.display()
                );
            }
        }
        let expected = outcomes.len() == 3
            && outcomes[0].2 == "succeeded"
            && outcomes[1].2 == "succeeded"
            && outcomes[2].2.contains("rolled back");
        if !expected {
            bail!("the demo did not go as expected: {outcomes:?}");
        }
        println!("every host runs v2: the bad v3 never took over.\n");
    } else {
        println!(
            "(cutover-demo-service not found next to this binary: skipping the deployments; build it with `cargo build --release --bins`)\n"
        );
    }

    if args.keep {
        print_keep_instructions(&dir, &running.url, &init.admin.cli_config, &addrs);
        crate::cli::shutdown_signal().await;
    } else if let Some(d) = args.run_for {
        println!(
            "running for {}; Ctrl-C stops it sooner",
            humantime::format_duration(d)
        );
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = crate::cli::shutdown_signal() => {}
        }
    }

    println!("stopping the demo service, the agents and the coordinator");
    // Apps outlive their agent by design: stop the service first.
    for a in &agents {
        let events = control
            .send_command(pb::SendCommandRequest {
                host_id: a.host.clone(),
                command: Some(pb::Command {
                    kind: Some(pb::command::Kind::Stop(pb::StopCommand {
                        service: "web".into(),
                        keep_listeners: false,
                        include_drained: true,
                    })),
                    ..Default::default()
                }),
                timeout_ms: 30_000,
            })
            .await;
        if let Ok(events) = events {
            let mut events = events.into_inner();
            while let Ok(Some(_)) = events.message().await {}
        }
    }
    for a in &mut agents {
        stop_child(&mut a.child).await;
    }
    running.shutdown().await?;
    if args.keep {
        std::mem::forget(_tmp);
        println!("files kept in {}", dir.display());
    }
    println!("demo finished");
    Ok(())
}

/// The demo service binary, next to this one.
fn demo_service_binary() -> Option<PathBuf> {
    let p = std::env::current_exe()
        .ok()?
        .with_file_name("cutover-demo-service");
    p.exists().then_some(p)
}

/// Packs the demo service into a release tarball; returns (file URL, sha256).
fn release_tarball(dir: &Path, bin: &Path) -> Result<(String, String)> {
    use sha2::Digest;
    let path = dir.join("demo-service.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path)?);
    b.append_path_with_name(bin, "bin/demo-service")?;
    b.into_inner()?.sync_all()?;
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&path)?));
    Ok((format!("file://{}", path.display()), sha))
}

/// A port free on every one of `ips`.
fn free_port_on(ips: &[std::net::IpAddr]) -> Result<u16> {
    for _ in 0..50 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let all: Result<Vec<_>, _> = ips
            .iter()
            .map(|ip| std::net::TcpListener::bind((*ip, port)))
            .collect();
        if all.is_ok() {
            return Ok(port);
        }
    }
    bail!("no port is free on all of the demo's loopback addresses")
}

fn spec_text(version: &str, flags: &[&str], strategy: &str, port: u16) -> String {
    let mut cmd = vec![
        "bin/demo-service".to_string(),
        "--app-version".into(),
        version.into(),
    ];
    cmd.extend(flags.iter().map(|s| s.to_string()));
    format!(
        r#"service = "web"

[run]
command = {cmd:?}

# The demo hosts share this machine: each agent binds 0.0.0.0 to its own
# address (its `service_ip`), so all serve on the same port.
[[listen]]
name = "http"
address = "0.0.0.0:{port}"

[swap]
min_ready = "1s"
grace = "5s"
ready_timeout = "3s"

[strategy]
{strategy}
healthy_deadline = "20s"

[targets]
selector = "role=web"
"#
    )
}

fn spawn_agent(bin: &Path, cfg: &Path, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .env("CUTOVER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        // A group of its own: Ctrl-C in the terminal reaches the demo only,
        // which stops the service through the agents, then the agents (an
        // agent killed by the same Ctrl-C left its app instances running).
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Rewrites the `coordinator = ...` line of a CLI config to `url`.
fn point_cli_config(path: &Path, url: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("coordinator = ") {
                format!("coordinator = \"{url}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    cutover_common::pki::write(path, text.as_bytes(), cutover_common::fsutil::SECRET_MODE)?;
    Ok(())
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn print_keep_instructions(
    dir: &Path,
    url: &str,
    cli_config: &Path,
    addrs: &[std::net::SocketAddr],
) {
    println!("The fleet keeps running. In another terminal:");
    println!("  export CUTOVER_CLI_CONFIG={}", cli_config.display());
    println!("  export CUTOVER_COORDINATOR={url}");
    println!("  cutover hosts                 # the fleet, what each host runs");
    println!("  cutover history web           # every deployment of the demo service");
    println!("  cutover status d3             # the rolled-back one, and why");
    println!("  cutover rollback web          # back to v1, in seconds");
    println!("  cutover drain demo-1 && cutover undrain demo-1");
    println!("  cutover audit                 # who did what");
    if let Some(a) = addrs.first() {
        println!("  curl -i http://{a}/           # the service itself (x-version header)");
    }
    println!("Logs: {}/agents/*/agent.log", dir.display());
    println!("Press Ctrl-C to stop.");
}
