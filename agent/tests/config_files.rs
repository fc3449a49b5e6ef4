//! Malformed agent config files: `cutover-agent run` and `config check`
//! name the file, the key and what was expected, and nothing starts.

use std::process::Command;

fn agent(args: &[&str], config_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover-agent"))
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_wrong_type_names_the_file_key_and_expectation() {
    let (ok, err) = agent(&["run"], "reconnect_max = 5\n");
    assert!(!ok);
    assert!(err.contains("agent.toml"), "{err}");
    assert!(err.contains("`reconnect_max`"), "{err}");
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn an_out_of_range_value_is_refused_with_the_range() {
    let (ok, err) = agent(&["config", "check"], "reconnect_jitter = 5.0\n");
    assert!(!ok);
    assert!(err.contains("`reconnect_jitter`"), "{err}");
    assert!(err.contains("between 0 and 1"), "{err}");
}

#[test]
fn bad_labels_are_refused() {
    let (ok, err) = agent(&["config", "check"], "labels = { \"Bad Key\" = \"x\" }\n");
    assert!(!ok);
    assert!(err.contains("`labels`"), "{err}");
}

#[test]
fn an_unknown_key_is_refused() {
    let (ok, err) = agent(&["config", "check"], "coordinatr = \"https://x:1\"\n");
    assert!(!ok);
    assert!(err.contains("coordinatr"), "{err}");
}

#[test]
fn run_without_enrollment_says_to_enroll() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = agent(
        &["run"],
        &format!("state_dir = \"{}\"\n", dir.path().display()),
    );
    assert!(!ok);
    assert!(err.contains("run `cutover-agent enroll` first"), "{err}");
}

#[test]
fn a_good_config_checks() {
    let (ok, err) = agent(
        &["config", "check"],
        "labels = { zone = \"a\" }\nrenew_at = 0.5\n",
    );
    assert!(ok, "{err}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/examples/agent.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cutover-agent"))
        .args(["config", "check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
