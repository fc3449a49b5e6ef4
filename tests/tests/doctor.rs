//! `cutover-agent doctor` tells an operator which swap modes an app supports.

use std::process::Command;

use cutover_tests::bin;

fn doctor(args: &[&str]) -> String {
    doctor_with(&[], args)
}

/// [`doctor`] with options of its own (`-o json`).
fn doctor_with(opts: &[&str], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::copy(
        bin("cutover-demo-service"),
        dir.path().join("bin/demo-service"),
    )
    .unwrap();
    let out = Command::new(bin("cutover-agent"))
        .args(["doctor", "--grace", "2s"])
        .args(opts)
        .arg("--dir")
        .arg(dir.path())
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

#[test]
fn an_app_following_the_contract_supports_handover() {
    let out = doctor(&["bin/demo-service"]);
    assert!(
        out.contains("takes its socket from LISTEN_FDS:  yes"),
        "{out}"
    );
    assert!(
        out.contains("sends READY=1:                     yes"),
        "{out}"
    );
    assert!(out.contains("mode = \"handover\": supported\n"), "{out}");
    // It closes a balancer's idle keep-alive connection on SIGTERM,
    // instead of waiting for it until SIGKILL.
    assert!(
        out.contains("closes idle keep-alive connections: yes, "),
        "{out}"
    );
    // The same answers for a pipeline.
    let v: serde_json::Value =
        serde_json::from_str(&doctor_with(&["-o", "json"], &["bin/demo-service"])).unwrap();
    assert_eq!(v["takes_listen_fds"], true, "{v:#}");
    assert!(
        v["sends_ready_ms"].is_u64() && v["exits_on_signal_ms"].is_u64(),
        "{v:#}"
    );
    assert!(v["exited_early"].is_null(), "{v:#}");
}

#[test]
fn an_app_ignoring_sigterm_is_told_so() {
    let out = doctor(&["bin/demo-service", "--ignore-sigterm"]);
    assert!(
        out.contains("exits on its stop signal in grace: no"),
        "{out}"
    );
    assert!(
        out.contains("handover\": not supported: the app does not stop on its signal"),
        "{out}"
    );
    assert!(
        out.contains("closes idle keep-alive connections: no (still open after 2s)"),
        "{out}"
    );
}

#[test]
fn an_app_binding_its_own_port_does_not_take_listen_fds() {
    let port = cutover_tests::release::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    // With LISTEN_FDS given, the demo service prefers them: force its own
    // socket by asking for a separate one it binds itself.
    let out = doctor(&[
        "/bin/sh",
        "-c",
        &format!("unset LISTEN_FDS LISTEN_PID; exec bin/demo-service --listen {listen}"),
    ]);
    assert!(
        out.contains("takes its socket from LISTEN_FDS:  no"),
        "{out}"
    );
    assert!(out.contains("ignores LISTEN_FDS"), "{out}");
}

#[test]
fn a_relative_release_directory_works_as_the_docs_show_it() {
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(top.path().join("release/bin")).unwrap();
    std::fs::copy(
        bin("cutover-demo-service"),
        top.path().join("release/bin/demo-service"),
    )
    .unwrap();
    let out = Command::new(bin("cutover-agent"))
        .current_dir(top.path())
        .args([
            "doctor",
            "--grace",
            "2s",
            "--dir",
            "./release",
            "--",
            "bin/demo-service",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mode = \"handover\": supported\n"), "{text}");
    // A directory that is not there is named.
    let out = Command::new(bin("cutover-agent"))
        .current_dir(top.path())
        .args(["doctor", "--dir", "./nope", "--", "bin/demo-service"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dir ./nope: no such directory"), "{err}");
}
