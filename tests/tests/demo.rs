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
