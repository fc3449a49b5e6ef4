//! Soak: many deployments on 3 hosts, measuring what grows. Run with
//! `bench/soak.sh` (`--deployments 300`, `--every 100`).
//!
//! Every `--every` deployments it samples, for the coordinator and each
//! agent: resident memory, open descriptors, and files and bytes under
//! the state directory (the coordinator's store among them); and how long
//! `cutover hosts`, `history` and `status` take. It reports the growth per
//! 100 deployments between the first and the last sample (issue 24: no
//! growth past the documented bounds: retention, the journal's cap, the
//! releases kept).

use std::path::Path;
use std::time::Instant;

use cutover_bench::{arg_u64, machine, rss_kib, write_results};
use cutover_tests::fleet::TestFleet;

fn descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// (files, bytes) under `dir`.
fn usage(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

#[derive(Debug, Clone)]
struct Sample {
    deployments: u64,
    coordinator_rss_kib: u64,
    coordinator_fds: u64,
    coordinator_files: u64,
    coordinator_bytes: u64,
    agent_rss_kib: Vec<u64>,
    agent_fds: Vec<u64>,
    agent_files: Vec<u64>,
    agent_bytes: Vec<u64>,
    hosts_ms: u64,
    history_ms: u64,
    status_ms: u64,
}

impl Sample {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "deployments": self.deployments,
            "coordinator_rss_kib": self.coordinator_rss_kib,
            "coordinator_fds": self.coordinator_fds,
            "coordinator_files": self.coordinator_files,
            "coordinator_bytes": self.coordinator_bytes,
            "agent_rss_kib": self.agent_rss_kib,
            "agent_fds": self.agent_fds,
            "agent_files": self.agent_files,
            "agent_bytes": self.agent_bytes,
            "hosts_ms": self.hosts_ms,
            "history_ms": self.history_ms,
            "status_ms": self.status_ms,
        })
    }
}

fn timed(f: &TestFleet, args: &[&str]) -> u64 {
    let t = Instant::now();
    let r = f.cutover(args);
    assert!(r.ok, "{args:?}: {}", r.stderr);
    t.elapsed().as_millis() as u64
}

fn sample(f: &TestFleet, n: u64) -> Sample {
    let c = f
        .cluster
        .coordinator
        .as_ref()
        .expect("coordinator")
        .child
        .id();
    let (cf, cb) = usage(&f.cluster.state_dir());
    let mut s = Sample {
        deployments: n,
        coordinator_rss_kib: rss_kib(c).unwrap_or(0),
        coordinator_fds: descriptors(c),
        coordinator_files: cf,
        coordinator_bytes: cb,
        agent_rss_kib: vec![],
        agent_fds: vec![],
        agent_files: vec![],
        agent_bytes: vec![],
        hosts_ms: timed(f, &["hosts"]),
        history_ms: timed(f, &["history", "web"]),
        status_ms: timed(f, &["status"]),
    };
    for a in &f.cluster.agents {
        let pid = a.proc.as_ref().expect("agent").child.id();
        let (af, ab) = usage(&a.state_dir);
        s.agent_rss_kib.push(rss_kib(pid).unwrap_or(0));
        s.agent_fds.push(descriptors(pid));
        s.agent_files.push(af);
        s.agent_bytes.push(ab);
    }
    s
}

fn per_100(first: f64, last: f64, span: u64) -> f64 {
    if span == 0 {
        return 0.0;
    }
    (last - first) * 100.0 / span as f64
}

fn main() -> anyhow::Result<()> {
    let total = arg_u64("--deployments", 300);
    let every = arg_u64("--every", 100).max(1);
    let f = TestFleet::builder().hosts(3).start();
    println!("fleet mode: {:?}", f.mode);
    let mut samples = Vec::new();
    let started = Instant::now();
    for n in 1..=total {
        let v = n.to_string();
        let spec = f.spec(&v, &[], "kind = \"rolling\"\nmax_unavailable = 1", "");
        let (run, code) = f.deploy(&spec, &v);
        anyhow::ensure!(code == 0, "deployment {n}: {}\n{}", run.stdout, run.stderr);
        std::fs::remove_file(&spec).ok();
        if n == 1 || n % every == 0 {
            let s = sample(&f, n);
            println!(
                "{n:>5} deployments: coordinator {} KiB {} fds {} files {} B; agents {:?} KiB {:?} fds {:?} files; hosts {} ms history {} ms status {} ms",
                s.coordinator_rss_kib,
                s.coordinator_fds,
                s.coordinator_files,
                s.coordinator_bytes,
                s.agent_rss_kib,
                s.agent_fds,
                s.agent_files,
                s.hosts_ms,
                s.history_ms,
                s.status_ms
            );
            samples.push(s);
        }
    }
    let (a, b) = (&samples[0], samples.last().expect("a sample"));
    let span = b.deployments - a.deployments;
    let sum = |v: &[u64]| v.iter().sum::<u64>() as f64;
    let growth = serde_json::json!({
        "coordinator_rss_kib": per_100(a.coordinator_rss_kib as f64, b.coordinator_rss_kib as f64, span),
        "coordinator_fds": per_100(a.coordinator_fds as f64, b.coordinator_fds as f64, span),
        "coordinator_files": per_100(a.coordinator_files as f64, b.coordinator_files as f64, span),
        "coordinator_bytes": per_100(a.coordinator_bytes as f64, b.coordinator_bytes as f64, span),
        "agents_rss_kib": per_100(sum(&a.agent_rss_kib), sum(&b.agent_rss_kib), span),
        "agents_fds": per_100(sum(&a.agent_fds), sum(&b.agent_fds), span),
        "agents_files": per_100(sum(&a.agent_files), sum(&b.agent_files), span),
        "agents_bytes": per_100(sum(&a.agent_bytes), sum(&b.agent_bytes), span),
    });
    println!(
        "growth per 100 deployments (sample {} to {}): {growth:#}",
        a.deployments, b.deployments
    );
    let p = write_results(
        "soak",
        &serde_json::json!({
            "machine": machine(),
            "mode": format!("{:?}", f.mode),
            "deployments": total,
            "seconds": started.elapsed().as_secs_f64(),
            "growth_per_100": growth,
            "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        }),
    );
    println!("wrote {}", p.display());
    Ok(())
}
