//! Agent footprint: idle RSS and CPU of a connected agent running one
//! service, over a minute; then RSS across 1,000 consecutive swaps (it must
//! stay flat). Run with `bench/agent-footprint.sh`.
//!
//! Targets (issue 7): at most 8 MiB idle RSS, at most 0.05 % of a core idle.

use std::time::{Duration, Instant};

use cutover_bench::{arg_u64, cpu_seconds, machine, rss_kib, write_results};
use cutover_tests::release::{Control, activate, demo_spec, demo_tarball, free_port, stage};
use cutover_tests::{Cluster, CoordinatorOptions};

fn main() -> anyhow::Result<()> {
    let idle_secs = arg_u64("--idle-secs", 60);
    let swaps = arg_u64("--swaps", 1000);
    let mut c = Cluster::start(CoordinatorOptions {
        host_timeout: "30s",
        heartbeat_interval: "5s",
        ..Default::default()
    })?;
    c.add_agent("bench-1", "role=web", "")?;
    c.wait_state("bench-1", "ready", Duration::from_secs(30));
    let mut control = Control::connect(&c);
    let a = demo_tarball(c.dir.path(), "demo.tar");
    let port = free_port();
    // Two releases to swap between; a quick swap (no bake time).
    for v in ["1", "2"] {
        let mut spec = demo_spec("web", port, v, &[]);
        spec.swap.min_ready = Duration::ZERO;
        spec.swap.grace = Duration::from_secs(5);
        let r = control.send(
            "bench-1",
            stage(&format!("s{v}"), &format!("r{v}"), v, &a, &spec),
        );
        anyhow::ensure!(r.ok, "staging {v}: {}", r.message);
    }
    let r = control.send("bench-1", activate("a0", "web", "r1"));
    anyhow::ensure!(r.ok, "activating: {}", r.message);

    // Idle: connected, one service running, health reports flowing, no
    // deployment going on. An agent reports health more often for 15
    // minutes after a command (see `Runtime::health_period`), so it is
    // restarted first: it takes its running service back, as after an
    // upgrade, and has had no command since.
    c.agent("bench-1").proc.as_mut().unwrap().kill();
    c.start_agent("bench-1")?;
    c.wait_state("bench-1", "ready", Duration::from_secs(30));
    let pid = c.agent("bench-1").proc.as_ref().unwrap().child.id();
    std::thread::sleep(Duration::from_secs(5));
    let (rss0, cpu0, t0) = (
        rss_kib(pid).unwrap(),
        cpu_seconds(pid).unwrap(),
        Instant::now(),
    );
    let mut peak = rss0;
    while t0.elapsed() < Duration::from_secs(idle_secs) {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss_kib(pid).unwrap());
    }
    let idle_cpu_pct = (cpu_seconds(pid).unwrap() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = rss_kib(pid).unwrap();
    println!(
        "idle over {idle_secs}s: RSS {idle_rss} KiB (peak {peak} KiB), CPU {idle_cpu_pct:.3}% of a core"
    );

    // Swaps: N handovers, alternating releases; RSS every 100.
    let mut samples = vec![(0u64, rss_kib(pid).unwrap())];
    let t = Instant::now();
    for i in 1..=swaps {
        let rel = if i % 2 == 1 { "r2" } else { "r1" };
        let r = control.send("bench-1", activate(&format!("sw{i}"), "web", rel));
        anyhow::ensure!(r.ok, "swap {i}: {}", r.message);
        if i % 100 == 0 {
            let rss = rss_kib(pid).unwrap();
            samples.push((i, rss));
            println!(
                "after {i} swaps: RSS {rss} KiB ({:.1} swaps/s)",
                i as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    let after = samples.last().unwrap().1;
    // Growth between the 100th and the last sample: warm-up excluded.
    let warm = samples.get(1).map_or(samples[0].1, |s| s.1);
    let growth = after as i64 - warm as i64;
    println!("RSS after {swaps} swaps: {after} KiB ({growth:+} KiB since swap 100)");
    let v = serde_json::json!({
        "benchmark": "agent-footprint",
        "machine": machine(),
        "idle_seconds": idle_secs,
        "idle_rss_kib": idle_rss,
        "idle_rss_peak_kib": peak,
        "idle_cpu_percent_of_core": idle_cpu_pct,
        "swaps": swaps,
        "swap_seconds": t.elapsed().as_secs_f64(),
        "rss_kib_by_swaps": samples,
        "rss_growth_kib_after_warmup": growth,
        "targets": {"idle_rss_kib_max": 8192, "idle_cpu_percent_max": 0.05},
    });
    println!(
        "results: {}",
        write_results("agent-footprint", &v).display()
    );
    Ok(())
}
