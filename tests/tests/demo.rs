//! `cutover demo`, as README tells a new user to run it: a whole fleet on
//! this machine, real deployments, a bad version rolled back by itself,
//! exit 0, nothing left running.

use std::process::Command;

use cutover_tests::bin;

#[test]
fn the_demo_deploys_rolls_a_bad_version_back_and_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("demo");
    let out = Command::new("timeout")
        .arg("120")
        .arg(bin("cutover"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "demo-3 joined",
        "deployment d1 succeeded",
        "batch 3/3: activating demo-3",
        "deployment d2 succeeded",
        "deployment d3 rolled back",
        "every host runs v2",
        "demo finished",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    // Clients kept sending requests through v2's rollout and v3's
    // rollback, and none failed.
    let clients = stdout
        .lines()
        .find(|l| l.contains("clients during v2 and v3:"))
        .unwrap_or_else(|| panic!("no request counts in:\n{stdout}"));
    assert!(clients.contains(" ok, 0 failed (v1 "), "{clients}");
    assert!(clients.contains(", v2 "), "{clients}");
    // Nothing of the demo is left running (apps outlive their agent by
    // design, so the demo must stop them itself).
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (cwd.starts_with(&dir) || cmdline.contains(dir.to_str().unwrap())).then_some(cmdline)
        })
        .collect();
    cutover_tests::kill_processes_under(&dir);
    assert!(leftovers.is_empty(), "left running: {leftovers:?}");
}

#[test]
fn ctrl_c_on_a_kept_demo_stops_everything_it_started_and_its_cli_config_works() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("demo");
    // Its own process group, as a shell gives a foreground job: Ctrl-C in
    // a terminal is SIGINT to the whole group.
    let mut child = Command::new(bin("cutover"))
        .args(["demo", "--keep", "--dir"])
        .arg(&dir)
        .env("HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !seen
        .iter()
        .any(|l: &String| l.contains("Press Ctrl-C to stop"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo never got to --keep:\n{}", seen.join("\n"));
            }
        }
    }
    // The CLI config the demo prints reaches its coordinator (it said
    // https://127.0.0.1:0, the port before the coordinator bound one).
    let cli_config = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("export CUTOVER_CLI_CONFIG="))
        .expect("the CLI config is printed")
        .to_string();
    let text = std::fs::read_to_string(&cli_config).unwrap();
    assert!(!text.contains(":0\""), "{text}");
    let hosts = Command::new(bin("cutover"))
        .args(["hosts", "-o", "json"])
        .env("HOME", home.path())
        .env("CUTOVER_CLI_CONFIG", &cli_config)
        .output()
        .unwrap();
    assert!(
        hosts.status.success() && String::from_utf8_lossy(&hosts.stdout).contains("demo-3"),
        "{}",
        String::from_utf8_lossy(&hosts.stderr)
    );
    assert!(
        !cutover_tests::processes_under(&dir).is_empty(),
        "the kept fleet runs"
    );
    // Ctrl-C.
    // To the demo's own group only (never a bare negative pid to kill(1),
    // which may read it as -1: every process).
    assert!(pgid > 1);
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pgid).expect("a real pid"),
        rustix::process::Signal::INT,
    )
    .expect("signalling the demo's process group");
    let status = cutover_tests::poll(
        "the demo to stop after Ctrl-C",
        std::time::Duration::from_secs(60),
        || child.try_wait().unwrap(),
    );
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
        seen.push(l);
    }
    let leftovers = cutover_tests::processes_under(&dir);
    cutover_tests::kill_processes_under(&dir);
    assert!(status.success(), "{status:?}\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("demo finished")),
        "{}",
        seen.join("\n")
    );
    assert!(
        leftovers.is_empty(),
        "left running after Ctrl-C: {leftovers:?}"
    );
}
