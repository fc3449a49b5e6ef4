//! Coordinator scale: thousands of simulated agents with real mTLS
//! sessions (each enrolled with a join token and its own certificate),
//! real `Hello` and heartbeats, answering commands as an agent would.
//! Measures, at 1k, 5k and 10k, the coordinator's memory per connected
//! agent and the fan-out latency of one deployment's first command to
//! every agent; then how long all agents take to reconnect after the
//! coordinator is killed and restarted. Run with `bench/fleet-scale.sh`.
//!
//! The driver starts the coordinator and spawns itself as worker
//! processes (`--worker`), each holding part of the fleet; workers report
//! on stdout as JSON lines.
//!
//! Targets (issue 7): at most 40 KiB per agent at 10k, p99 fan-out at most
//! 100 ms at 10k, full reconnect within 10 s.
//!
//! Options: `--steps 1000,5000,10000` (a step repeated, `5000,5000`, runs
//! another deployment on the same agents), `--per-worker 2500`, `--pin`
//! (the coordinator on CPU 0, the agents on CPU 1), `--stage-ms N` (the
//! agents answer `Stage` after N ms, as a real agent does after its
//! download, instead of at once), `--memory-only` (memory at each step,
//! no deployment, then a clean exit for a heap profiler),
//! `--ticket-lifetime 1m` (the coordinator's `session_ticket_lifetime`),
//! `--quiet-secs N` (the fleet sits idle N s before the kill: with a short
//! ticket lifetime, longer than the tickets from the sessions' own
//! handshakes last), `--no-collect` (the simulated agents do not collect
//! fresh tickets beside their sessions, as agents before stop 20 did).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_agent::enroll::{EnrollRequest, enroll};
use cutover_agent::identity::IdentityFiles;
use cutover_agent::session::{SessionError, Targets};
use cutover_bench::{arg, arg_u64, cpu_seconds, machine, rss_kib, write_results};
use cutover_common::tls::{self, ChannelOptions};
use cutover_proto::v1 as pb;
use cutover_tests::{Cluster, CoordinatorOptions, poll};
use tokio_stream::wrappers::ReceiverStream;

fn now_ms() -> i64 {
    cutover_common::time::now_ms()
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--worker") {
        return worker();
    }
    driver()
}

// ---------------------------------------------------------------- worker

fn worker() -> anyhow::Result<()> {
    // The driver holds our stdin: when it goes (killed, panicked), so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let url = arg("--url").expect("--url");
    let token = arg("--token").expect("--token");
    let fp = arg("--fingerprint").expect("--fingerprint");
    let dir = PathBuf::from(arg("--dir").expect("--dir"));
    let first: usize = arg("--first").expect("--first").parse()?;
    let count: usize = arg("--count").expect("--count").parse()?;
    let stage_ms = arg_u64("--stage-ms", 0);
    let collect = !std::env::args().any(|a| a == "--no-collect");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Enroll, 16 at a time (each is a TLS handshake and a signature).
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for i in first..first + count {
            let (url, token, fp, dir, sem) = (
                url.clone(),
                token.clone(),
                fp.clone(),
                dir.clone(),
                sem.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let host = format!("sim-{i:05}");
                let files = IdentityFiles::new(&dir.join(&host));
                // A connection refused or a call cut off while thousands
                // enroll at once is tried again by `enroll` itself, with
                // the same key; a refusal is not.
                enroll(
                    &files,
                    EnrollRequest {
                        coordinator: url.clone(),
                        token: token.clone(),
                        ca_fingerprint: fp.clone(),
                        host_id: host.clone(),
                    },
                    ChannelOptions::default(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("enrolling {host}: {e}"))?;
                anyhow::Ok((host, files))
            }));
        }
        let mut hosts = Vec::new();
        for t in tasks {
            hosts.push(t.await??);
        }
        println!(
            "{}",
            serde_json::json!({"event": "enrolled", "n": hosts.len()})
        );
        // When each agent got `Stage`, reported in batches: a line (a write
        // and the driver's parse) per agent would be CPU taken from the
        // fan-out being measured.
        tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                let at: Vec<i64> = std::mem::take(&mut *STAGES.lock().unwrap());
                if !at.is_empty() {
                    println!("{}", serde_json::json!({"event": "stages", "at_ms": at}));
                }
                let failed = std::mem::take(&mut *FAILED.lock().unwrap());
                if !failed.is_empty() {
                    println!(
                        "{}",
                        serde_json::json!({"event": "failed", "by_error": failed})
                    );
                }
            }
        });
        // Sessions, forever (the driver kills the worker).
        for (host, files) in hosts {
            let url = url.clone();
            tokio::spawn(async move { sim_agent(host, files, url, stage_ms, collect).await });
        }
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

/// When this worker's agents received `Stage`, not reported yet.
static STAGES: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// Session attempts that failed, by error, not reported yet: each is a
/// handshake (or part of one) done again.
static FAILED: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// One simulated agent: keeps a session open, reconnecting when it
/// breaks; answers every command with success, `Stage` after `stage_ms`
/// (a real agent downloads and unpacks first). With `collect`, it
/// collects fresh session tickets beside its session, as the agent does.
async fn sim_agent(host: String, files: IdentityFiles, url: String, stage_ms: u64, collect: bool) {
    let mut delay = Duration::from_millis(200);
    // Kept between sessions, as the agent keeps them.
    let tickets = tls::SessionTickets::default();
    // Several coordinators (`--url a,b,c`): tried in turn, a standby's
    // named leader next, as the agent does (the agent's own `Targets`).
    let mut targets = Targets::new(url.split(',').map(str::to_string).collect());
    loop {
        let mut welcomed = false;
        let url = targets.pick();
        let dead = targets.dead_leader().map(str::to_string);
        let s = Sim {
            host: &host,
            files: &files,
            tickets: &tickets,
            url: &url,
            dead_leader: dead.as_deref(),
            stage_ms,
            collect,
        };
        match session(s, &mut welcomed).await {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e) => {
                // A session that was up and broke (at the kill) is not a
                // failed attempt; one that ended before `Welcome` is.
                let standby = e
                    .downcast_ref::<tonic::Status>()
                    .and_then(cutover_agent::session::standby_leader);
                let at_once = if welcomed {
                    targets.worked(&url);
                    delay = Duration::from_millis(200);
                    targets.urls.len() > 1
                } else {
                    let why: String = format!("{e:#}").chars().take(120).collect();
                    *FAILED.lock().unwrap().entry(why).or_default() += 1;
                    let as_agent = match standby {
                        Some(leader) => SessionError::Standby {
                            message: String::new(),
                            leader,
                        },
                        None => SessionError::Broken(String::new()),
                    };
                    targets.failed(&as_agent)
                };
                if at_once {
                    tokio::time::sleep(Duration::from_millis(100 + rand_ms(100))).await;
                    continue;
                }
                // Spread the reconnects, as real agents do (jitter).
                let j = rand_ms(delay.as_millis() as u64 / 2);
                tokio::time::sleep(delay + Duration::from_millis(j)).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn rand_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms() as u64);
    h.finish() % max.max(1)
}

/// One simulated agent's settings for a session.
struct Sim<'a> {
    host: &'a str,
    files: &'a IdentityFiles,
    tickets: &'a tls::SessionTickets,
    url: &'a str,
    /// A leader a standby named that could not be reached (the agent's
    /// `cutover-dead-leader` header).
    dead_leader: Option<&'a str>,
    stage_ms: u64,
    collect: bool,
}

async fn session(sim: Sim<'_>, welcomed: &mut bool) -> anyhow::Result<()> {
    let Sim {
        host,
        files,
        tickets,
        url,
        dead_leader,
        stage_ms,
        collect,
    } = sim;
    let identity = files.tls_identity()?;
    let ca = files.ca_certs()?;
    let config = tls::resuming_client_config(&ca, &identity, tickets)?;
    let channel = tls::connect(url, config.clone(), ChannelOptions::default()).await?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AgentMessage>(16);
    tx.send(pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            host_id: host.into(),
            agent_version: "sim".into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut call = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(v) = dead_leader.and_then(|d| d.parse().ok()) {
        call.metadata_mut()
            .insert(cutover_common::wire::DEAD_LEADER_HEADER, v);
    }
    let mut inbound = client.session(call).await?.into_inner();
    let mut heartbeat_every = Duration::from_secs(5);
    let mut announced = false;
    let mut tick = tokio::time::interval(heartbeat_every);
    let mut ticket_lifetime = Duration::ZERO;
    let mut collect_at: Option<tokio::time::Instant> = None;
    loop {
        let due = collect_at;
        tokio::select! {
            // As the agent: fresh tickets at 40 to 60 % of their lifetime.
            _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {
                let (url, config) = (url.to_string(), config.clone());
                tokio::spawn(async move {
                    if let Err(e) = tls::collect_tickets(&url, config, ChannelOptions::default()).await {
                        let why: String = format!("ticket collection: {:#}", anyhow::Error::from(e)).chars().take(120).collect();
                        *FAILED.lock().unwrap().entry(why).or_default() += 1;
                    }
                });
                collect_at = tls::ticket_refresh_after(ticket_lifetime, rand_ms(1000) as f64 / 1000.0)
                    .map(|d| tokio::time::Instant::now() + d);
            }
            m = inbound.message() => {
                let Some(m) = m? else { anyhow::bail!("session ended") };
                match m.body {
                    Some(pb::coordinator_message::Body::Welcome(w)) => {
                        *welcomed = true;
                        heartbeat_every = Duration::from_millis(w.heartbeat_interval_ms.max(100));
                        tick = tokio::time::interval(heartbeat_every);
                        ticket_lifetime = Duration::from_millis(w.session_ticket_lifetime_ms);
                        if collect {
                            collect_at = tls::ticket_refresh_after(ticket_lifetime, rand_ms(1000) as f64 / 1000.0)
                                .map(|d| tokio::time::Instant::now() + d);
                        }
                        if !announced {
                            announced = true;
                            println!("{}", serde_json::json!({"event": "connected", "host": host, "at_ms": now_ms()}));
                        }
                    }
                    Some(pb::coordinator_message::Body::Command(c)) => {
                        let at = now_ms();
                        let (service, release, wait) = match &c.kind {
                            Some(pb::command::Kind::Stage(s)) => {
                                STAGES.lock().unwrap().push(at);
                                (s.service.clone(), String::new(), stage_ms)
                            }
                            Some(pb::command::Kind::Activate(a)) => (a.service.clone(), a.release_id.clone(), 0),
                            _ => (String::new(), String::new(), 0),
                        };
                        let tx = tx.clone();
                        let answer = async move {
                            if wait > 0 {
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                            }
                            tx.send(pb::AgentMessage {
                            body: Some(pb::agent_message::Body::Result(pb::CommandResult {
                                command_id: c.command_id,
                                ok: true,
                                message: "simulated".into(),
                                service,
                                active_release: release,
                                finished_at_ms: now_ms(),
                                deployment_id: c.deployment_id,
                                ..Default::default()
                            })),
                        })
                        .await
                        };
                        if wait > 0 {
                            tokio::spawn(answer);
                        } else {
                            answer.await?;
                        }
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                tx.send(pb::AgentMessage {
                    body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat { sent_at_ms: now_ms() })),
                })
                .await?;
            }
        }
    }
}

// ---------------------------------------------------------------- driver

/// What the workers said.
#[derive(Default)]
struct Events {
    enrolled: usize,
    connected: Vec<(String, i64)>,
    stage: Vec<i64>,
    failed: BTreeMap<String, u64>,
}

fn spawn_worker(
    c: &Cluster,
    token: &str,
    fp: &str,
    first: usize,
    count: usize,
    events: Arc<Mutex<Events>>,
) -> Child {
    // `--pin`: the simulated agents on the second core, the coordinator on
    // the first (see `driver`), so that neither takes the other's CPU.
    let mut cmd = if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(std::env::current_exe().unwrap());
        c
    } else {
        Command::new(std::env::current_exe().unwrap())
    };
    let mut child = cmd
        .args([
            "--worker",
            "--url",
            &c.url(),
            "--token",
            token,
            "--fingerprint",
            fp,
        ])
        .arg("--dir")
        .arg(c.dir.path().join("sim"))
        .args(["--first", &first.to_string(), "--count", &count.to_string()])
        .args(["--stage-ms", &arg_u64("--stage-ms", 0).to_string()])
        .args(
            std::env::args()
                .any(|a| a == "--no-collect")
                .then_some("--no-collect"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a worker");
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let mut e = events.lock().unwrap();
            match v["event"].as_str() {
                Some("enrolled") => e.enrolled += v["n"].as_u64().unwrap_or(0) as usize,
                Some("connected") => e.connected.push((
                    v["host"].as_str().unwrap_or_default().into(),
                    v["at_ms"].as_i64().unwrap_or(0),
                )),
                Some("stages") => e.stage.extend(
                    v["at_ms"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_i64()),
                ),
                Some("failed") => {
                    for (why, n) in v["by_error"].as_object().into_iter().flatten() {
                        *e.failed.entry(why.clone()).or_default() += n.as_u64().unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
    });
    child
}

fn pinned() -> bool {
    std::env::args().any(|a| a == "--pin")
}

/// TCP connections the kernel dropped because a listener's accept queue
/// was full (`ListenOverflows`, and `ListenDrops` which includes them), in
/// this network namespace.
fn listen_drops() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = s.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let get = |name: &str| {
        names
            .split_whitespace()
            .position(|n| n == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("ListenOverflows"), get("ListenDrops"))
}

/// Live sessions, from the coordinator's metrics (0 while it is down).
fn sessions(c: &Cluster) -> f64 {
    let Ok(addr) = std::fs::read_to_string(c.state_dir().join("metrics.addr")) else {
        return 0.0;
    };
    let Some((200, body)) = cutover_tests::http_get(addr.trim(), "/metrics") else {
        return 0.0;
    };
    body.lines()
        .find_map(|l| l.strip_prefix("cutover_agent_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn pct(v: &mut [i64], q: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn driver() -> anyhow::Result<()> {
    let steps: Vec<usize> = arg("--steps")
        .unwrap_or_else(|| "1000,5000,10000".into())
        .split(',')
        .map(|s| s.parse().expect("--steps: numbers"))
        .collect();
    let per_worker: usize = arg("--per-worker").map_or(2500, |v| v.parse().unwrap());
    let total = *steps.last().unwrap();
    if pinned() {
        println!("pinned: the coordinator on CPU 0, the simulated agents on CPU 1");
    }
    let ticket_lifetime: &'static str =
        arg("--ticket-lifetime").map_or("24h", |v| Box::leak(v.into_boxed_str()));
    let quiet = Duration::from_secs(arg_u64("--quiet-secs", 0));
    let mut c = Cluster::start(CoordinatorOptions {
        host_timeout: "60s",
        heartbeat_interval: "10s",
        session_ticket_lifetime: ticket_lifetime,
        ..Default::default()
    })?;
    pin_coordinator(&c);
    let coord_pid = || c_pid(&c);
    let base_rss = rss_kib(coord_pid()).unwrap();
    println!("coordinator up, RSS {base_rss} KiB with no agent");
    let (token, fp) = c.token("role=sim", "2h", total as u32)?;
    let events = Arc::new(Mutex::new(Events::default()));
    let mut workers = Vec::new();
    let mut placed = 0;
    let mut by_step = Vec::new();
    let mut fanouts: Vec<FanOut> = Vec::new();
    let memory_only = std::env::args().any(|a| a == "--memory-only");
    for &n in &steps {
        let t = Instant::now();
        while placed < n {
            let count = per_worker.min(n - placed);
            workers.push(spawn_worker(&c, &token, &fp, placed, count, events.clone()));
            placed += count;
        }
        poll(&format!("{n} sessions"), Duration::from_secs(600), || {
            // A worker that gave up (its error is on stderr above) never
            // brings its agents: stop now rather than at the timeout.
            if let Some(status) = workers.iter_mut().find_map(|w| w.try_wait().ok().flatten()) {
                panic!("a simulated-agent worker exited ({status}) before its agents connected");
            }
            (sessions(&c) as usize >= n).then_some(())
        });
        // Let heartbeats and allocations settle.
        println!("{n} sessions up; settling for 5 s");
        std::thread::sleep(Duration::from_secs(5));
        let rss = rss_kib(coord_pid()).unwrap();
        let per = (rss - base_rss) as f64 / n as f64;
        println!(
            "{n} agents connected in {:.1}s (enrolment included): coordinator RSS {rss} KiB, {per:.1} KiB per agent",
            t.elapsed().as_secs_f64()
        );
        by_step.push(serde_json::json!({"agents": n, "rss_kib": rss, "kib_per_agent": per}));
        if memory_only {
            continue;
        }
        // Then one deployment's fan-out to these n. The next step's memory
        // is measured after it: a coordinator that has run deployments,
        // as in a real fleet.
        let f = fanout(&c, &workers, &events, n, fanouts.len() + 1)?;
        fanouts.push(f);
    }
    if memory_only {
        // For a heap profile (CUTOVER_TEST_COORDINATOR_WRAPPER="valgrind
        // --tool=massif ..."): a clean exit, so the profiler writes its file.
        c.coordinator.as_mut().unwrap().stop();
        return Ok(());
    }

    let last = fanouts.last().expect("at least one step");

    if !quiet.is_zero() {
        println!(
            "the fleet idles {}s before the kill (session tickets live {ticket_lifetime})",
            quiet.as_secs()
        );
        std::thread::sleep(quiet);
    }
    // Reconnect: the coordinator is SIGKILLed and restarted.
    let drops0 = listen_drops();
    let workers_cpu0 = workers_cpu(&workers);
    let failed0 = events.lock().unwrap().failed.clone();
    c.coordinator.as_mut().unwrap().kill();
    let killed = Instant::now();
    c.start_coordinator()?;
    let up = killed.elapsed();
    pin_coordinator(&c);
    poll("every agent back", Duration::from_secs(300), || {
        (sessions(&c) as usize >= total).then_some(())
    });
    let reconnect = killed.elapsed();
    let handshakes = |kind: &str| {
        c.metric(&format!("cutover_tls_handshakes_total{{kind=\"{kind}\"}}"))
            .unwrap_or(0.0)
    };
    let (full, resumed) = (handshakes("full"), handshakes("resumed"));
    // CPU of the reconnect: the new coordinator's whole life so far, and
    // the simulated agents' since the kill. On shared cores the wall time
    // follows their sum.
    let reconnect_cpu = (
        cpu_seconds(c_pid(&c)).unwrap_or(0.0),
        workers_cpu(&workers) - workers_cpu0,
    );
    let drops1 = listen_drops();
    let (overflows, drops) = (
        drops1.0.saturating_sub(drops0.0),
        drops1.1.saturating_sub(drops0.1),
    );
    println!(
        "all {total} agents reconnected {:.2}s after the kill (the coordinator was listening again after {:.2}s); accept queue overflows meanwhile: {overflows} (connections dropped: {drops})",
        reconnect.as_secs_f64(),
        up.as_secs_f64()
    );
    // Reported within 50 ms by each worker.
    std::thread::sleep(Duration::from_millis(200));
    let failed: BTreeMap<String, u64> = events
        .lock()
        .unwrap()
        .failed
        .iter()
        .map(|(why, n)| (why.clone(), n - failed0.get(why).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    println!("TLS handshakes since the restart: {resumed} resumed, {full} full");
    println!(
        "session attempts that failed during the reconnect: {} {failed:?}",
        failed.values().sum::<u64>()
    );
    println!(
        "CPU over the reconnect: coordinator {:.2} s ({:.0} us per agent), simulated agents {:.2} s",
        reconnect_cpu.0,
        reconnect_cpu.0 * 1e6 / total as f64,
        reconnect_cpu.1
    );
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let v = serde_json::json!({
        "benchmark": "fleet-scale",
        "machine": machine(),
        "coordinator_rss_kib_no_agents": base_rss,
        "by_agents": by_step,
        "pinned": pinned(),
        "sim_stage_ms": arg_u64("--stage-ms", 0),
        "fanout_ms": {"agents": total, "first": last.first, "p50": last.p50, "p99": last.p99, "max": last.max},
        "fanout_from_first_receipt_ms": last.since_first_receipt(),
        "fanout_by_agents": fanouts.iter().map(FanOut::json).collect::<Vec<_>>(),
        "reconnect_listen_overflows": overflows,
        "reconnect_listen_drops": drops,
        "recreate_rollout_ms": last.rollout_ms,
        "rollout_cpu_s": {"coordinator": last.rollout_cpu.0, "simulated_agents": last.rollout_cpu.1},
        "fanout_cpu_s": last.fanout_cpu.map(|(c, w)| serde_json::json!({"coordinator": c, "simulated_agents": w})),
        "reconnect_after_kill_s": reconnect.as_secs_f64(),
        "reconnect_handshakes": {"full": full, "resumed": resumed},
        "session_ticket_lifetime": ticket_lifetime,
        "quiet_before_kill_s": quiet.as_secs(),
        "sims_collect_tickets": !std::env::args().any(|a| a == "--no-collect"),
        "reconnect_failed_attempts": failed,
        "reconnect_cpu_s": {"coordinator": reconnect_cpu.0, "simulated_agents": reconnect_cpu.1},
        "coordinator_restart_s": up.as_secs_f64(),
        "targets": {"kib_per_agent_max": 40, "fanout_p99_ms_max": 100, "reconnect_s_max": 10},
    });
    println!("results: {}", write_results("fleet-scale", &v).display());
    Ok(())
}

/// One deployment's fan-out: when each agent got its `Stage`, and the CPU
/// it took.
struct FanOut {
    agents: usize,
    /// From `cutover deploy`, in ms.
    first: i64,
    p50: i64,
    p99: i64,
    max: i64,
    /// The whole recreate rollout, from `cutover deploy --watch` to its end.
    rollout_ms: i64,
    /// CPU seconds over the rollout: coordinator, simulated agents.
    rollout_cpu: (f64, f64),
    /// The same until every agent had its `Stage`.
    fanout_cpu: Option<(f64, f64)>,
    /// The coordinator's RSS (KiB) 5 s after the rollout ended.
    rss_after: u64,
}

impl FanOut {
    /// p50, p99 and last from the first `Stage` received: the broadcast
    /// itself, without the CLI's start, the deploy call, planning and
    /// storing the rollout that come before the first send.
    fn since_first_receipt(&self) -> serde_json::Value {
        serde_json::json!({"p50": self.p50 - self.first, "p99": self.p99 - self.first, "max": self.max - self.first})
    }

    fn json(&self) -> serde_json::Value {
        let us = |s: f64| s * 1e6 / self.agents as f64;
        serde_json::json!({
            "agents": self.agents,
            "coordinator_rss_kib_after": self.rss_after,
            "from_deploy_ms": {"first": self.first, "p50": self.p50, "p99": self.p99, "max": self.max},
            "from_first_receipt_ms": self.since_first_receipt(),
            "fanout_cpu_us_per_agent": self.fanout_cpu.map(|(c, w)| serde_json::json!({"coordinator": us(c), "simulated_agents": us(w)})),
        })
    }
}

/// Deploys `version` with a `recreate` of every agent (`total`, all
/// connected) and measures its `Stage` fan-out.
fn fanout(
    c: &Cluster,
    workers: &[Child],
    events: &Arc<Mutex<Events>>,
    total: usize,
    version: usize,
) -> anyhow::Result<FanOut> {
    let spec = c.dir.path().join("sim.toml");
    std::fs::write(
        &spec,
        "service = \"sim\"\n[run]\ncommand = [\"bin/sim\"]\n[strategy]\nkind = \"recreate\"\n[targets]\nselector = \"role=sim\"\n",
    )?;
    let sha = "0".repeat(64);
    // CPU time of the coordinator and of the simulated agents over the
    // rollout: they share this machine's cores.
    let (coord_cpu0, workers_cpu0) = (cpu_seconds(c_pid(c)).unwrap_or(0.0), workers_cpu(workers));
    // And over the fan-out alone: until every agent has its Stage (within
    // the workers' 50 ms reporting; with `--stage-ms` longer than the
    // fan-out, nothing else happens in that window).
    let fanout_cpu = {
        let (events, coord, pids) = (
            Arc::clone(events),
            c_pid(c),
            workers.iter().map(Child::id).collect::<Vec<_>>(),
        );
        std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(120) {
                if events.lock().unwrap().stage.len() >= total {
                    let w: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
                    return Some((cpu_seconds(coord).unwrap_or(0.0), w));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    };
    let submitted = now_ms();
    let r = c.cutover(&[
        "deploy",
        spec.to_str().unwrap(),
        "--version",
        &version.to_string(),
        "--artifact",
        "https://artifacts.invalid/sim.tar",
        "--sha256",
        &sha,
        "--watch",
    ]);
    let rollout_ms = now_ms() - submitted;
    anyhow::ensure!(r.ok, "deployment failed:\n{}\n{}", r.stdout, r.stderr);
    let coord_cpu = cpu_seconds(c_pid(c)).unwrap_or(0.0) - coord_cpu0;
    let workers_used = workers_cpu(workers) - workers_cpu0;
    // What the deployment left in the coordinator, once settled as each
    // step's memory is (for the per-agent figure, the next step's RSS).
    std::thread::sleep(Duration::from_secs(5));
    let rss_after = rss_kib(c_pid(c)).unwrap_or(0);
    println!("coordinator RSS 5 s after the rollout: {rss_after} KiB");
    println!(
        "CPU over the rollout: coordinator {coord_cpu:.2} s ({:.0} us per agent), simulated agents {workers_used:.2} s",
        coord_cpu * 1e6 / total as f64
    );
    let fanout_cpu = fanout_cpu
        .join()
        .unwrap()
        .map(|(c, w)| (c - coord_cpu0, w - workers_cpu0));
    if let Some((c, w)) = fanout_cpu {
        println!(
            "CPU until every agent had Stage: coordinator {c:.2} s ({:.0} us per agent), simulated agents {w:.2} s ({:.0} us per agent)",
            c * 1e6 / total as f64,
            w * 1e6 / total as f64
        );
    }
    let mut lat: Vec<i64> = std::mem::take(&mut events.lock().unwrap().stage)
        .iter()
        .map(|t| t - submitted)
        .collect();
    anyhow::ensure!(
        lat.len() >= total,
        "only {} of {total} got Stage",
        lat.len()
    );
    let (p50, p99, max) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    let first = pct(&mut lat, 0.0);
    println!(
        "fan-out of Stage to {total} agents (from `cutover deploy`): first {first} ms, p50 {p50} ms, p99 {p99} ms, last {max} ms; whole recreate rollout {rollout_ms} ms"
    );
    // The same from the first agent's Stage (`FanOut::since_first_receipt`).
    println!(
        "  from the first Stage received: p50 {} ms, p99 {} ms, last {} ms",
        p50 - first,
        p99 - first,
        max - first
    );
    Ok(FanOut {
        agents: total,
        first,
        p50,
        p99,
        max,
        rollout_ms,
        rollout_cpu: (coord_cpu, workers_used),
        fanout_cpu,
        rss_after,
    })
}

/// With `--pin`, moves every thread of the coordinator to CPU 0 (threads
/// it starts later inherit that).
fn pin_coordinator(c: &Cluster) {
    if pinned() {
        let ok = Command::new("taskset")
            .args(["-a", "-c", "-p", "0", &c_pid(c).to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset failed: --pin needs util-linux's taskset");
    }
}

/// CPU seconds the simulated-agent workers have used so far.
fn workers_cpu(ws: &[Child]) -> f64 {
    ws.iter().filter_map(|w| cpu_seconds(w.id())).sum()
}

fn c_pid(c: &Cluster) -> u32 {
    c.coordinator.as_ref().unwrap().child.id()
}
