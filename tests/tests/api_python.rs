//! The control API from another language, as a platform tool uses it:
//! `examples/python/cutover_client.py` (grpcio from Debian's packages,
//! stubs generated from `proto/`) connects with an operator's identity,
//! validates, submits with a request id (and retries it), and follows the
//! rollout to its end, against a real coordinator and agents.

use std::time::Duration;

use cutover_tests::release::demo_tarball;
use cutover_tests::{Cluster, CoordinatorOptions, real_python_module};

/// The operator a run connects as: `as:NAME` among the flags, or admin.
fn identity<'a>(flags: &[&'a str]) -> &'a str {
    flags
        .iter()
        .find_map(|f| f.strip_prefix("as:"))
        .unwrap_or("admin")
}

fn run(
    c: &Cluster,
    spec: &std::path::Path,
    version: &str,
    a: &cutover_tests::release::Artifact,
    flags: &[&str],
) -> (i32, String, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python/cutover_client.py");
    let out = std::process::Command::new("timeout")
        .args(["120", "/usr/bin/python3"])
        .arg(script)
        .args(["--coordinator", &c.addr])
        .arg("--ca")
        .arg(c.pki_dir().join("ca.crt"))
        .arg("--identity")
        .arg(
            c.pki_dir()
                .join(format!("operators/{}.pem", identity(flags))),
        )
        .arg("--spec")
        .arg(spec)
        .args([
            "--version",
            version,
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
        ])
        .args(flags.iter().filter(|f| !f.starts_with("as:")))
        .env("TMPDIR", c.dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_python_client_deploys_retries_safely_and_follows_to_the_end() {
    if !real_python_module("grpc") || !real_python_module("grpc_tools") {
        return;
    }
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    for h in ["web-1", "web-2"] {
        c.add_agent(h, "role=web", "").unwrap();
    }
    for h in ["web-1", "web-2"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    let spec = |version: &str, extra: &str| {
        let p = c.dir.path().join(format!("web-{version}.toml"));
        std::fs::write(
            &p,
            format!(
                "service = \"web\"\n[run]\ncommand = [\"bin/demo-service\", \"--app-version\", \"{version}\"{extra}]\n[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[swap]\nmin_ready = \"300ms\"\n[strategy]\nmax_unavailable = 1\nhealthy_deadline = \"20s\"\n[targets]\nselector = \"role=web\"\n"
            ),
        )
        .unwrap();
        p
    };
    let (code, out, err) = run(&c, &spec("1", ""), "1", &a, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("connected as admin (admin)"), "{out}");
    assert!(out.contains("a retry got d1"), "{out}");
    assert!(out.contains("deployment d1 succeeded"), "{out}");
    // Read from the typed status.
    assert!(
        out.contains("DEPLOYMENT_PHASE_SUCCEEDED (2/2 hosts done, 2 batches)"),
        "{out}"
    );
    // A spec changed in code: read into typed fields (every default filled
    // in), every host set to swap at once, sent as typed fields: one batch.
    let (code, out, err) = run(&c, &spec("1b", ""), "1b", &a, &["--all-at-once"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "typed spec: web, STRATEGY_ROLLING, healthy_deadline 20s, max_unavailable count 1"
        ),
        "{out}"
    );
    assert!(
        out.contains("DEPLOYMENT_PHASE_SUCCEEDED (2/2 hosts done, 1 batches)"),
        "{out}"
    );
    // The switch command runs on the coordinator: a deployer may not submit
    // one, however the spec is sent (here as typed fields).
    c.issue_operator("deployer", "deployer").unwrap();
    let p = c.dir.path().join("bg.toml");
    std::fs::write(
        &p,
        "service = \"web\"\n[run]\ncommand = [\"bin/demo-service\"]\n[strategy]\nkind = \"blue_green\"\nswitch = { command = [\"/bin/true\"] }\n[targets]\nselector = \"role=web\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&c, &p, "9", &a, &["--all-at-once", "as:deployer"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("needs the admin role"),
        "{out}\n{err}"
    );
    // A version that crashes is rolled back: exit 3, as the CLI's.
    let (code, out, err) = run(&c, &spec("2", ", \"--crash-on-start\""), "2", &a, &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("deployment d3 rolled_back"), "{out}");
    // A bad spec: refused with where it is wrong.
    let bad = c.dir.path().join("bad.toml");
    std::fs::write(&bad, "service = \"web\"\n[run]\ncommand = 7\n").unwrap();
    let (code, out, err) = run(&c, &bad, "3", &a, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("spec refused: bad.toml:3:"), "{err}");
}
