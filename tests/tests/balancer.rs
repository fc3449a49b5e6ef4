//! Drains and rollouts as a real HAProxy (Debian's package) sees them,
//! with HAProxy's own defaults: health checks every 2 s, a server down
//! after 3 failed ones and up after 2 good ones, keep-alive to the
//! servers, and no `option redispatch` (a request sent to a stopped app
//! would fail, not be retried elsewhere). Hosts in network namespaces
//! (or on loopback addresses), under load through HAProxy.
//!
//! Skipped (and says so) where haproxy is not installed; `.ci/run`
//! installs it and makes a missing one a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_tests::fleet::TestFleet;
use cutover_tests::haproxy::{Haproxy, RUNNING};
use cutover_tests::load::{self, Load, Record};
use cutover_tests::{Run, poll, processes_under, real_component};

/// HAProxy's defaults: nothing added to the server lines.
const DEFAULT_CHECKS: &str = "";

/// What HAProxy thought of a host, and whether its app ran, sampled
/// every 50 ms.
struct Watch {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Instant, u8, usize)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(lb: &Haproxy, f: &TestFleet, i: usize) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s2, out) = (stop.clone(), samples.clone());
        let name = f.hosts[i].id.clone();
        let dir = f.cluster.agents[i].state_dir.clone();
        let socket = lb.socket().to_path_buf();
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let state = haproxy_state(&socket, &name);
                let apps = processes_under(&dir).len();
                out.lock().unwrap().push((Instant::now(), state, apps));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watch {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Every sample so far, once one shows the app stopped (the drain's
    /// answer may come before the next sample).
    fn stop(mut self) -> Vec<(Instant, u8, usize)> {
        poll(
            "a sample after the app stopped",
            Duration::from_secs(10),
            || {
                let s = self.samples.lock().unwrap();
                s.last()
                    .is_some_and(|(_, _, apps)| *apps == 0)
                    .then_some(())
            },
        );
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples.lock().unwrap().clone()
    }
}

/// `srv_op_state` of server `name`, read from the admin socket.
fn haproxy_state(socket: &std::path::Path, name: &str) -> u8 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return 255;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"show servers state be\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 6 && f[3] == name)
        .and_then(|f| f[5].parse().ok())
        .unwrap_or(255)
}

/// Checks that the app of a host stopped only once HAProxy had it down:
/// no sample where HAProxy still sent it clients and no app ran.
fn assert_stopped_only_after_marked_down(samples: &[(Instant, u8, usize)], host: &str) {
    let t0 = samples[0].0;
    let mut last = None;
    for (t, st, apps) in samples {
        if last != Some((*st, *apps)) {
            eprintln!(
                "{:>6.2}s haproxy {st} apps {apps}",
                t.duration_since(t0).as_secs_f64()
            );
            last = Some((*st, *apps));
        }
    }
    let marked_down = samples
        .iter()
        .find(|(_, state, _)| *state != RUNNING)
        .map(|(t, ..)| *t)
        .unwrap_or_else(|| panic!("haproxy never marked {host} down"));
    let stopped = samples
        .iter()
        .find(|(_, _, apps)| *apps == 0)
        .map(|(t, ..)| *t)
        .unwrap_or_else(|| {
            panic!(
                "{host}'s app never stopped: {} samples, the last {:?}",
                samples.len(),
                &samples[samples.len().saturating_sub(5)..]
            )
        });
    let early: Vec<_> = samples
        .iter()
        .filter(|(_, state, apps)| *state == RUNNING && *apps == 0)
        .collect();
    eprintln!(
        "{host}: haproxy marked it down, then its app stopped {:.2}s later",
        stopped.saturating_duration_since(marked_down).as_secs_f64()
    );
    assert!(
        early.is_empty() && stopped > marked_down,
        "{host}'s app stopped while haproxy still had it up ({} samples)",
        early.len()
    );
}

fn spec(f: &TestFleet, version: &str, flags: &[&str]) -> std::path::PathBuf {
    f.spec(
        version,
        flags,
        "kind = \"rolling\"\nmax_unavailable = 1",
        "",
    )
}

fn in_thread(f: &TestFleet, args: &[&str]) -> std::thread::JoinHandle<Run> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = f.cluster.operator_env("admin");
    let home = f.cluster.dir.path().to_path_buf();
    std::thread::spawn(move || {
        std::process::Command::new(cutover_tests::bin("cutover"))
            .args(&args)
            .env("HOME", home)
            .envs(env)
            .output()
            .unwrap()
            .into()
    })
}

/// A fleet on v1 behind HAProxy with default checks, under load.
fn behind_haproxy() -> Option<(TestFleet, Haproxy, Load)> {
    if !real_component("haproxy") {
        return None;
    }
    let f = TestFleet::builder().hosts(3).start();
    let (r, code) = f.deploy(&f.spec("1", &[], "kind = \"recreate\"", ""), "1");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("1");
    let lb = Haproxy::start(&f, DEFAULT_CHECKS, "");
    for h in &f.hosts {
        lb.wait_state(&h.id, true, Duration::from_secs(20));
    }
    // Two clients keeping their connection, two opening one per request.
    let load = Load::start_paced(lb.addr, 2, 2, Some(300));
    poll("load through haproxy", Duration::from_secs(20), || {
        (load.count() > 50).then_some(())
    });
    Some((f, lb, load))
}

#[test]
fn drain_stop_and_undrain_behind_haproxy_defaults_fail_no_request() {
    let Some((f, lb, load)) = behind_haproxy() else {
        return;
    };
    let watch = Watch::start(&lb, &f, 1);
    let started = Instant::now();
    let r = f.cutover(&["drain", "web-2", "--stop"]);
    let took = started.elapsed();
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    eprintln!("drain --stop in {took:?}:\n{}", r.stdout);
    // It waited for HAProxy's own timing (3 checks 2 s apart), said who
    // confirmed, and the app closed HAProxy's idle keep-alive connections
    // on SIGTERM instead of being killed after its grace.
    assert!(
        r.stdout.contains("balancer(s) confirmed: "),
        "no balancer named: {}",
        r.stdout
    );
    assert!(took >= Duration::from_secs(4), "drained in {took:?}");
    assert!(r.stdout.contains("stopped pid "), "{}", r.stdout);
    assert!(!r.stdout.contains("killed"), "{}", r.stdout);
    let samples = watch.stop();
    assert_stopped_only_after_marked_down(&samples, "web-2");
    assert_ne!(lb.states()["web-2"], RUNNING);
    // Drained and stopped, as `cutover hosts` says.
    poll("web-2 shown drained", Duration::from_secs(15), || {
        let h = f.cluster.host("web-2")?;
        let s = &h["services"][0];
        (s["drained"] == true && s["status"] == "stopped").then_some(())
    });

    let r = f.cutover(&["undrain", "web-2"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("undrained: "), "{}", r.stdout);
    assert!(r.stdout.contains(" serving as pid "), "{}", r.stdout);
    lb.wait_state("web-2", true, Duration::from_secs(20));
    let before = lb.sessions()["web-2"];
    poll("web-2 given clients again", Duration::from_secs(20), || {
        (lb.sessions()["web-2"] > before + 10).then_some(())
    });
    let records: Vec<Record> = load.stop();
    let k = load::counts(&records);
    eprintln!("through haproxy during drain --stop and undrain: {k:?}");
    assert_eq!(k.failed(), 0, "{k:?}");
    assert!(k.ok > 500, "too little load: {k:?}");
}

#[test]
fn a_rolling_deployment_with_drains_in_the_middle_fails_no_request_and_ends_as_documented() {
    let Some((f, lb, load)) = behind_haproxy() else {
        return;
    };
    // v2 takes 2 s to get ready: each host's swap is long enough to drain
    // a host in the middle of it.
    let v2 = spec(&f, "2", &["--ready-delay-ms", "2000"]);
    let deploy = {
        let args = f.deploy_args_watch(&v2, "2");
        in_thread(&f, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let web2 = f.cluster.agents[1].state_dir.clone();
    // web-2's swap under way: its old and new instances both run.
    poll("web-2 swapping", Duration::from_secs(60), || {
        (processes_under(&web2).len() >= 2).then_some(())
    });
    let watch = Watch::start(&lb, &f, 1);
    // A drain with stop of the host being swapped, and a drain of the
    // host still to come.
    let drain2 = in_thread(&f, &["drain", "web-2", "--stop"]);
    let drain3 = in_thread(&f, &["drain", "web-3"]);
    let (d2, d3) = (drain2.join().unwrap(), drain3.join().unwrap());
    let dep = deploy.join().unwrap();
    eprintln!(
        "deploy:\n{}{}\ndrain web-2:\n{}\ndrain web-3:\n{}",
        dep.stdout, dep.stderr, d2.stdout, d3.stdout
    );
    assert!(
        d2.ok && d3.ok,
        "{}{}{}{}",
        d2.stdout,
        d2.stderr,
        d3.stdout,
        d3.stderr
    );
    // The rollout succeeded: web-2's swap finished before its drain ran
    // (no rollback, no "rollback failed"); web-3, drained before its
    // turn, was skipped and named, not failed or restarted.
    assert!(dep.ok, "the deployment did not succeed");
    assert!(
        dep.stdout.contains("2/3 on 2, 1 skipped (drained)"),
        "{}",
        dep.stdout
    );
    assert!(
        dep.stdout
            .contains("web-3: skipped, drained by an operator during the rollout"),
        "{}",
        dep.stdout
    );
    assert!(!dep.stdout.contains("rolling back"), "{}", dep.stdout);
    // web-2 stopped on v2 (its swap's release), only after HAProxy had it
    // down; web-3 still serves v1 (drained, out of the balancer).
    assert_stopped_only_after_marked_down(&watch.stop(), "web-2");
    let rel: std::collections::BTreeMap<String, String> = f.releases().into_iter().collect();
    assert!(
        rel["web-1"].starts_with("2-") && rel["web-2"].starts_with("2-"),
        "{rel:?}"
    );
    assert!(rel["web-3"].starts_with("1-"), "{rel:?}");
    assert!(processes_under(&f.cluster.agents[1].state_dir).is_empty());
    assert_eq!(processes_under(&f.cluster.agents[2].state_dir).len(), 1);

    // A deployment that includes drained hosts: web-2 gets v3 without
    // being started, web-3 is swapped and stays out of the balancer.
    let v3 = spec(&f, "3", &[]);
    let mut args = f.deploy_args_watch(&v3, "3");
    args.push("--include-drained".into());
    let dep = f.cutover(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(dep.ok, "{}\n{}", dep.stdout, dep.stderr);
    assert!(dep.stdout.contains("3/3 on 3"), "{}", dep.stdout);
    let rel: std::collections::BTreeMap<String, String> = f.releases().into_iter().collect();
    assert!(rel.values().all(|r| r.starts_with("3-")), "{rel:?}");
    assert!(processes_under(&f.cluster.agents[1].state_dir).is_empty());
    assert_ne!(lb.states()["web-3"], RUNNING, "web-3 is drained");
    // Both back: v3 everywhere, all three in the balancer.
    for h in ["web-2", "web-3"] {
        let r = f.cutover(&["undrain", h]);
        assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    }
    for h in ["web-1", "web-2", "web-3"] {
        lb.wait_state(h, true, Duration::from_secs(20));
    }
    let records = load.stop();
    let k = load::counts(&records);
    eprintln!("through haproxy during the rollouts and drains: {k:?}");
    assert_eq!(k.failed(), 0, "{k:?}");
    assert!(k.ok > 500, "too little load: {k:?}");
}

#[test]
fn blue_green_through_haproxy_with_the_shipped_switch_command() {
    if !real_component("haproxy") {
        return;
    }
    let f = TestFleet::builder()
        .hosts(4)
        .labels(0, "role=web,color=blue")
        .labels(1, "role=web,color=blue")
        .labels(2, "role=web,color=green")
        .labels(3, "role=web,color=green")
        .start();
    let lb = Haproxy::spawn(&f, DEFAULT_CHECKS, "");
    let bg = format!(
        "kind = \"blue_green\"\nswitch = {{ command = [\"{}\", \"haproxy-switch\", \"--socket\", \"{}\", \"--backend\", \"be\"] }}",
        cutover_tests::bin("cutover").display(),
        lb.socket().display()
    );
    // The first deployment: CUTOVER_OLD_GROUP is empty; blue goes live
    // and green, running nothing yet, is drained at HAProxy.
    let (r, code) = f.deploy(&f.spec("1", &[], &bg, ""), "1");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("haproxy backend be: ready and up: web-1, web-2; drained: web-3, web-4"),
        "{}",
        r.stdout
    );
    lb.wait_serving();
    let load = Load::start_paced(lb.addr, 2, 2, Some(300));
    poll("load through haproxy", Duration::from_secs(20), || {
        (load.count() > 50).then_some(())
    });
    // v2 to green, then traffic switched to it.
    let (r, code) = f.deploy(&f.spec("2", &[], &bg, ""), "2");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("ready and up: web-3, web-4; drained: web-1, web-2"),
        "{}",
        r.stdout
    );
    let switched = Instant::now();
    // Back to blue at once (nothing started or stopped).
    std::thread::sleep(Duration::from_secs(2));
    // Traffic may move back any time after this (before the command
    // returns).
    let rolling_back = Instant::now();
    let r = f.cutover(&["rollback", "web"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("switched back to group blue"),
        "{}",
        r.stdout
    );
    let back = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let records = load.stop();
    let k = load::counts(&records);
    eprintln!("through haproxy, blue/green switch and back: {k:?}");
    assert_eq!(k.failed(), 0, "{k:?}");
    // A second after each switch, every new connection is answered by
    // the live group. (A client's keep-alive session already open stays
    // with its server until it closes: `drain` sends no new sessions
    // there, and cuts none.)
    let version = |r: &Record| match &r.outcome {
        load::Outcome::Ok { version } => version.clone(),
        _ => String::new(),
    };
    let settle = Duration::from_secs(1);
    let wrong: Vec<&Record> = records
        .iter()
        .filter(|r| !r.keepalive)
        .filter(|r| {
            (r.started > switched + settle && r.ended < rolling_back && version(r) != "2")
                || (r.started > back + settle && version(r) != "1")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} answers from the group not live: {:?}",
        wrong.len(),
        wrong
            .iter()
            .map(|r| (
                r.started.saturating_duration_since(switched),
                r.started.saturating_duration_since(back),
                version(r)
            ))
            .collect::<Vec<_>>()
    );
    // A switch to hosts HAProxy does not know changes nothing, and says so.
    let out = std::process::Command::new(cutover_tests::bin("cutover"))
        .args(["haproxy-switch", "--backend", "be", "--socket"])
        .arg(lb.socket())
        .env("CUTOVER_HOSTS", "web-9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no server named [\"web-9\"]"), "{err}");
    let states = lb.states();
    assert!(states.values().all(|s| *s == RUNNING), "{states:?}");
}

/// nginx (Debian's package) in front of the fleet as docs/load-balancers.md
/// configures it: passive checks only, retries on another server.
struct Nginx {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(f: &TestFleet) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = cutover_tests::release::free_port();
        let servers: String = (0..f.hosts.len())
            .map(|i| format!("    server {} max_fails=1 fail_timeout=10s;\n", f.addr(i)))
            .collect();
        let d = dir.path().display();
        let cfg = format!(
            "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             upstream web {{\n{servers}    keepalive 16;\n  }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://web;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_next_upstream error timeout http_502 http_503;\n      proxy_next_upstream_tries 3;\n    }}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, cfg).unwrap();
        let child = std::process::Command::new("nginx")
            .args(["-g", "daemon off;", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nginx");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        poll("nginx serving", Duration::from_secs(20), || {
            cutover_tests::http_get(&addr.to_string(), "/").filter(|(s, _)| *s == 200)
        });
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (after a
        // SIGKILL they would be left running).
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn behind_nginx_with_passive_checks_drain_stop_undrain_and_a_rollout_fail_no_request() {
    if !real_component("nginx") {
        return;
    }
    let f = TestFleet::builder().hosts(3).start();
    // nginx never reads the readiness endpoint: the drain waits a delay.
    let drain = "[drain]\nwait_for = \"delay\"\nderegistration_delay = \"2s\"";
    let (r, code) = f.deploy(&f.spec("1", &[], "kind = \"recreate\"", drain), "1");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("1");
    let lb = Nginx::start(&f);
    let load = Load::start_paced(lb.addr, 2, 2, Some(300));
    poll("load through nginx", Duration::from_secs(20), || {
        (load.count() > 50).then_some(())
    });
    let r = f.cutover(&["drain", "web-2", "--stop"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("waited deregistration_delay (2."),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("killed"), "{}", r.stdout);
    std::thread::sleep(Duration::from_secs(1));
    let r = f.cutover(&["undrain", "web-2"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let (r, code) = f.deploy(
        &f.spec("2", &[], "kind = \"rolling\"\nmax_unavailable = 1", drain),
        "2",
    );
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("2");
    let records = load.stop();
    let k = load::counts(&records);
    eprintln!("through nginx during drain --stop, undrain and a rollout: {k:?}");
    assert_eq!(k.failed(), 0, "{k:?}");
    assert!(k.ok > 500, "too little load: {k:?}");
}
