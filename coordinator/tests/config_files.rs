//! Malformed coordinator config files: `cutover serve` and `cutover config
//! check` name the file, the key and what was expected, and nothing starts.

use std::process::Command;

fn run(args: &[&str], config_text: &str) -> (bool, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("coordinator.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &cfg,
        config_text.replace("STATE", &state.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
        dir,
    )
}

#[test]
fn a_wrong_type_is_named_with_file_key_and_expectation_and_nothing_starts() {
    let (ok, err, dir) = run(
        &["serve"],
        "state_dir = \"STATE\"\nlisten = \"not an address\"\n",
    );
    assert!(!ok);
    assert!(err.contains("coordinator.toml"), "{err}");
    assert!(err.contains("`listen`"), "{err}");
    assert!(err.contains("socket address"), "{err}");
    // And a valid value to follow, from the shipped example config.
    assert!(
        err.contains("for example `listen = \"0.0.0.0:7443\"`"),
        "{err}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "serve created state despite a bad config"
    );
}

#[test]
fn an_unknown_key_is_refused() {
    let (ok, err, _d) = run(
        &["config", "check"],
        "state_dir = \"STATE\"\nhost_timout = \"5s\"\n",
    );
    assert!(!ok);
    assert!(err.contains("host_timout"), "{err}");
    assert!(err.contains("coordinator.toml"), "{err}");
}

#[test]
fn a_bad_nested_value_names_the_dotted_key() {
    let (ok, err, _d) = run(
        &["config", "check"],
        "[limits]\nmax_message_bytes = \"lots\"\n",
    );
    assert!(!ok);
    assert!(err.contains("`limits.max_message_bytes`"), "{err}");
    assert!(err.contains("expected"), "{err}");
    assert!(
        err.contains("for example `max_message_bytes = 4194304`"),
        "{err}"
    );
}

#[test]
fn inconsistent_timings_are_refused_with_the_reason() {
    let (ok, err, _d) = run(
        &["config", "check"],
        "host_timeout = \"1s\"\nheartbeat_interval = \"1s\"\n",
    );
    assert!(!ok);
    assert!(err.contains("`host_timeout`"), "{err}");
    assert!(err.contains("at least twice heartbeat_interval"), "{err}");
}

#[test]
fn a_session_ticket_lifetime_past_tls_13s_week_is_refused_and_0s_is_off() {
    let (ok, err, _d) = run(
        &["config", "check"],
        "session_ticket_lifetime = \"8days\"\n",
    );
    assert!(!ok);
    assert!(err.contains("`session_ticket_lifetime`"), "{err}");
    assert!(err.contains("between 1m and 7days"), "{err}");
    let (ok, err, _d) = run(&["config", "check"], "session_ticket_lifetime = \"0s\"\n");
    assert!(ok, "{err}");
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let (ok, err, _d) = run(&["config", "check"], "listen = = 1\n");
    assert!(!ok);
    assert!(err.contains("coordinator.toml"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn a_good_config_checks_and_prints_the_effective_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "host_timeout = \"45s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .env("CUTOVER_HEARTBEAT_INTERVAL", "2s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("host_timeout = \"45s\""), "{text}");
    assert!(
        text.contains("heartbeat_interval = \"2s\""),
        "environment overrides the file: {text}"
    );
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["serve", "--config", "/nonexistent/coordinator.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/coordinator.toml does not exist")
    );
}

#[test]
fn serve_without_a_ca_says_to_run_ca_init() {
    let (ok, err, _d) = run(
        &["serve"],
        "state_dir = \"STATE\"\nlisten = \"127.0.0.1:0\"\n",
    );
    assert!(!ok);
    assert!(err.contains("run `cutover ca init` first"), "{err}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/examples/coordinator.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["config", "check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_environments_bad_freeze_or_window_is_named_by_its_key() {
    let (ok, err, _d) = run(
        &["config", "check"],
        "[environments.production]\nfreezes = [ { from = \"2026-12-20\", until = \"2027-01-04T00:00:00Z\" } ]\n",
    );
    assert!(!ok);
    assert!(
        err.contains("`environments.production.freezes[0]`"),
        "{err}"
    );
    assert!(
        err.contains("2026-12-20T00:00:00Z"),
        "an example of a good value: {err}"
    );
    let (ok, err, _d) = run(
        &["config", "check"],
        "[environments.production]\nfreezes = [ { from = \"2027-01-04T00:00:00Z\", until = \"2026-12-20T00:00:00Z\" } ]\n",
    );
    assert!(!ok && err.contains("is not after"), "{err}");
    let (ok, err, _d) = run(
        &["config", "check"],
        "[environments.production]\nwindows = [\"weekdays 9-5\"]\n",
    );
    assert!(!ok);
    assert!(
        err.contains("`environments.production.windows[0]`"),
        "{err}"
    );
    let (ok, err, _d) = run(
        &["config", "check"],
        "[environments.production]\napproval = true\nwindows = [\"mon-fri 09:00-16:00\"]\nfreezes = [ { from = \"2026-12-20T00:00:00Z\", until = \"2027-01-04T00:00:00Z\", reason = \"year end\" } ]\n",
    );
    assert!(ok, "{err}");
}

/// The administrator's commands print JSON too: the effective config, a
/// new CA's fingerprint and files, the fingerprint again, an operator.
#[test]
fn config_check_and_ca_commands_print_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\nhost_timeout = \"45s\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .args(["-o", "json"])
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    };
    let c = json(&["config", "check"]);
    assert_eq!(c["host_timeout"], "45s", "{c:#}");
    let init = json(&["ca", "init"]);
    let fp = init["ca_fingerprint"].as_str().unwrap().to_string();
    assert!(fp.starts_with("sha256:"), "{init:#}");
    assert!(
        std::path::Path::new(init["admin_cli_config"].as_str().unwrap()).exists(),
        "{init:#}"
    );
    assert_eq!(json(&["ca", "fingerprint"])["ca_fingerprint"], fp);
    let op = json(&["ca", "issue-operator", "--name", "ci", "--role", "deployer"]);
    assert_eq!(
        (op["name"].as_str(), op["role"].as_str()),
        (Some("ci"), Some("deployer")),
        "{op:#}"
    );
    assert!(op["not_after"].as_str().unwrap().ends_with('Z'), "{op:#}");
}
