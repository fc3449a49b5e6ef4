//! Rolling restart against Ansible: the same hosts (network namespaces),
//! the same service and release tarball, the same health gate (batches of
//! 4, each host healthy before the next batch), once with Cutover and once
//! with Ansible, in the same run. Run with `bench/rolling-vs-ansible.sh`.
//!
//! Ansible gets its fastest honest setup: the local connection (no SSH),
//! no fact gathering, 20 forks, the release unpacked on every host in a
//! first play without `serial` (as Cutover stages everywhere first), then
//! a play with `serial: 4` that stops the old process, starts the new one
//! and polls `/healthz` with `uri` (`until`, no delay between tries).
//!
//! Targets (issue 7): Cutover at least 20 times faster, at most 50 ms of
//! overhead per batch beyond the health gate.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cutover_bench::{arg_u64, machine, write_results};
use cutover_tests::fleet::{Mode, TestFleet};
use cutover_tests::http_get;

/// The port the Ansible-managed copy of the service listens on (Cutover's
/// copy keeps the fleet's port on the same hosts).
const ANSIBLE_PORT: u16 = 8081;

fn cutover_spec(f: &TestFleet, version: &str, ready_delay_ms: u64, batch: usize) -> PathBuf {
    let text = format!(
        r#"service = "web"
[run]
command = ["bin/demo-service", "--app-version", "{version}", "--ready-delay-ms", "{ready_delay_ms}"]
[[listen]]
name = "http"
address = "0.0.0.0:{port}"
[swap]
min_ready = "0s"
grace = "10s"
ready_timeout = "30s"
[strategy]
kind = "rolling"
max_unavailable = {batch}
[targets]
selector = "role=web"
"#,
        port = f.port
    );
    let p = f
        .cluster
        .dir
        .path()
        .join(format!("bench-web-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Sum and count of the coordinator's batch duration histogram.
fn batch_histogram(f: &TestFleet) -> (f64, f64) {
    let (samples, _) = f.cluster.metrics();
    let get = |name: &str| {
        samples
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    };
    (
        get("cutover_batch_duration_seconds_sum"),
        get("cutover_batch_duration_seconds_count"),
    )
}

/// Every host answers `version` on `port`.
fn all_answer(f: &TestFleet, port: u16, version: &str) -> anyhow::Result<()> {
    for h in &f.hosts {
        let addr = format!("{}:{port}", h.ip);
        let (status, body) =
            http_get(&addr, "/").ok_or_else(|| anyhow::anyhow!("{} does not answer", h.id))?;
        anyhow::ensure!(
            status == 200 && body.starts_with(&format!("version={version} ")),
            "{} answered {status} {body:?}, not version {version}",
            h.id
        );
    }
    Ok(())
}

struct Ansible {
    dir: PathBuf,
}

impl Ansible {
    fn new(f: &TestFleet, ready_delay_ms: u64, batch: usize) -> anyhow::Result<Ansible> {
        // Under the cluster's directory: its teardown kills what runs there.
        let dir = f.cluster.dir.path().join("ansible");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let mut inv = String::from("[web]\n");
        for h in &f.hosts {
            let prefix = h
                .netns
                .as_ref()
                .map_or(String::new(), |n| format!("ip netns exec {n}"));
            inv.push_str(&format!("{} ip={} exec_prefix=\"{prefix}\"\n", h.id, h.ip));
        }
        inv.push_str(&format!(
            "[web:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\n\
             root={root}\nport={ANSIBLE_PORT}\nartifact_url={url}\nready_delay_ms={ready_delay_ms}\n",
            root = dir.display(),
            url = f.artifact.url,
        ));
        std::fs::write(dir.join("inventory"), inv)?;
        std::fs::write(
            dir.join("stage.yml"),
            r#"- hosts: web
  gather_facts: false
  tasks:
    - name: release directory
      file:
        path: "{{ root }}/{{ inventory_hostname }}/releases/{{ version }}"
        state: directory
    - name: unpack the release
      unarchive:
        src: "{{ artifact_url }}"
        dest: "{{ root }}/{{ inventory_hostname }}/releases/{{ version }}"
        remote_src: true
"#,
        )?;
        // The stop waits for the old process to be gone (or a zombie: the
        // process started in the background is nobody's child here).
        std::fs::write(
            dir.join("rolling.yml"),
            format!(
                r#"- hosts: web
  gather_facts: false
  serial: {batch}
  tasks:
    - name: stop the old version, start the new one
      shell: |
        d={{{{ root }}}}/{{{{ inventory_hostname }}}}
        if [ -f $d/pid ]; then
          pid=$(cat $d/pid)
          kill -TERM $pid 2>/dev/null || true
          while [ -e /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null; do sleep 0.01; done
        fi
        cd $d/releases/{{{{ version }}}}
        {{{{ exec_prefix }}}} setsid ./bin/demo-service --app-version {{{{ version }}}} --listen {{{{ ip }}}}:{{{{ port }}}} --ready-delay-ms {{{{ ready_delay_ms }}}} > $d/log 2>&1 < /dev/null &
        echo $! > $d/pid
    - name: wait until healthy
      uri:
        url: "http://{{{{ ip }}}}:{{{{ port }}}}/healthz"
      register: health
      until: health.status == 200
      retries: 600
      delay: 0
"#
            ),
        )?;
        Ok(Ansible { dir })
    }

    /// Runs a playbook; its wall time.
    fn play(&self, playbook: &str, version: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let out = Command::new("ansible-playbook")
            .current_dir(&self.dir)
            .args([
                "-i",
                "inventory",
                playbook,
                "-e",
                &format!("version={version}"),
            ])
            .env("HOME", &self.dir)
            .env("ANSIBLE_FORKS", "20")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("tmp"))
            .env("ANSIBLE_REMOTE_TMP", self.dir.join("tmp"))
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .output()?;
        let took = t.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "ansible-playbook {playbook} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let hosts = arg_u64("--hosts", 20) as usize;
    let batch = arg_u64("--batch", 4) as usize;
    let rounds = arg_u64("--rounds", 3);
    let ready_delay_ms = arg_u64("--ready-delay-ms", 0);
    anyhow::ensure!(
        Command::new("ansible-playbook")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "ansible-playbook not found: apt-get install ansible-core"
    );
    let f = TestFleet::builder()
        .hosts(hosts)
        .host_timeout("30s")
        .start();
    if f.mode == Mode::Loopback {
        println!("fleet mode: loopback (network namespaces unavailable)");
    }
    let batches = hosts.div_ceil(batch);
    let ansible = Ansible::new(&f, ready_delay_ms, batch)?;

    // Version 1 everywhere first, with both tools (not timed).
    let spec = cutover_spec(&f, "1", ready_delay_ms, hosts);
    let (run, code) = f.deploy(&spec, "1");
    anyhow::ensure!(
        code == 0,
        "cutover deploy of v1: {}\n{}",
        run.stdout,
        run.stderr
    );
    ansible.play("stage.yml", "1")?;
    ansible.play("rolling.yml", "1")?;
    all_answer(&f, f.port, "1")?;
    all_answer(&f, ANSIBLE_PORT, "1")?;

    let mut out = Vec::new();
    for round in 0..rounds {
        let version = (round + 2).to_string();
        // Cutover: `cutover deploy --watch`, from submission to done.
        let spec = cutover_spec(&f, &version, ready_delay_ms, batch);
        let (sum0, n0) = batch_histogram(&f);
        let t = Instant::now();
        let (run, code) = f.deploy(&spec, &version);
        let cutover = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            code == 0,
            "cutover deploy of v{version}: {}\n{}",
            run.stdout,
            run.stderr
        );
        all_answer(&f, f.port, &version)?;
        let (sum1, n1) = batch_histogram(&f);
        anyhow::ensure!(
            (n1 - n0) as usize == batches,
            "expected {batches} batches, the coordinator counted {}",
            n1 - n0
        );
        let batch_s = (sum1 - sum0) / (n1 - n0);

        // Ansible: unpack everywhere, then the rolling play.
        let stage = ansible.play("stage.yml", &version)?.as_secs_f64();
        let rolling = ansible.play("rolling.yml", &version)?.as_secs_f64();
        all_answer(&f, ANSIBLE_PORT, &version)?;
        let ansible_s = stage + rolling;

        let gate_s = ready_delay_ms as f64 / 1000.0;
        let overhead_ms = (batch_s - gate_s) * 1000.0;
        println!(
            "round {}: cutover {cutover:.2} s ({batches} batches, {:.0} ms each, overhead beyond the gate {overhead_ms:.0} ms); \
             ansible {ansible_s:.2} s (unpack {stage:.2} s, rolling {rolling:.2} s, {:.0} ms a batch); ratio {:.1}x",
            round + 1,
            batch_s * 1000.0,
            rolling / batches as f64 * 1000.0,
            ansible_s / cutover
        );
        out.push(serde_json::json!({
            "version": version,
            "cutover_s": cutover,
            "cutover_batch_ms": batch_s * 1000.0,
            "cutover_overhead_per_batch_ms": overhead_ms,
            "ansible_s": ansible_s,
            "ansible_unpack_s": stage,
            "ansible_rolling_s": rolling,
            "ansible_batch_ms": rolling / batches as f64 * 1000.0,
            "ratio": ansible_s / cutover,
        }));
    }
    let col = |k: &str| -> Vec<f64> { out.iter().map(|r| r[k].as_f64().unwrap()).collect() };
    let (c, a) = (median(&col("cutover_s")), median(&col("ansible_s")));
    let overhead = median(&col("cutover_overhead_per_batch_ms"));
    println!(
        "median of {rounds}: cutover {c:.2} s, ansible {a:.2} s, {:.1}x faster (target at least 20x); \
         overhead per batch {overhead:.0} ms (target at most 50 ms)",
        a / c
    );
    let p = write_results(
        "rolling-vs-ansible",
        &serde_json::json!({
            "machine": machine(),
            "mode": format!("{:?}", f.mode),
            "hosts": hosts, "batch": batch, "batches": batches,
            "ready_delay_ms": ready_delay_ms,
            "ansible": ansible_version(),
            "rounds": out,
            "median": {"cutover_s": c, "ansible_s": a, "ratio": a / c, "cutover_overhead_per_batch_ms": overhead},
        }),
    );
    println!("results: {}", p.display());
    // The processes Ansible started run in directories under the cluster's:
    // its teardown kills them with the agents' instances.
    Ok(())
}

fn ansible_version() -> String {
    Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}
