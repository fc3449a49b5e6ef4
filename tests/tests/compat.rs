//! Mixed versions, as fleets upgrade: the coordinator first, agents over
//! days. Agents and a coordinator from the previous release (the commit in
//! `tests/compat/previous`, built by `.ci/build-previous`) run beside this
//! tree's: deployments go through both ways, and a spec that needs what an
//! older agent cannot do is refused before anything is staged, naming the
//! hosts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::release::demo_tarball;
use cutover_tests::{Cluster, CoordinatorOptions, Run, poll, previous_release};

fn spec(c: &Cluster, version: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"service = "web"

[run]
command = ["bin/demo-service", "--app-version", "{version}"]

[[listen]]
name = "http"
address = "127.0.0.1:0"

[swap]
min_ready = "300ms"
grace = "5s"
ready_timeout = "3s"

[strategy]
kind = "rolling"
max_unavailable = 1
healthy_deadline = "20s"

[targets]
selector = "role=web"
{extra}"#
    );
    let p = c.dir.path().join(format!("web-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn deploy(c: &Cluster, spec: &Path, version: &str, a: &cutover_tests::release::Artifact) -> Run {
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(cutover_tests::bin("cutover"))
        .args(["deploy", spec.to_str().unwrap(), "--version", version])
        .args(["--artifact", &a.url, "--sha256", &a.sha256, "--watch"])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    out.into()
}

fn all_on(c: &Cluster, version: &str) {
    poll(
        &format!("every host on {version}"),
        Duration::from_secs(15),
        || {
            let r = c.releases();
            (r.len() == 2
                && r.iter()
                    .all(|(_, rel)| rel.starts_with(&format!("{version}-"))))
            .then_some(())
        },
    );
}

/// Waits for both hosts; the demo artifact.
fn ready(c: &Cluster) -> cutover_tests::release::Artifact {
    for h in ["web-1", "web-2"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    demo_tarball(c.dir.path(), "demo.tar")
}

/// Deploys `v` with the default spec: it succeeds and both hosts run it.
fn deploy_ok(c: &Cluster, v: &str, a: &cutover_tests::release::Artifact) {
    let r = deploy(c, &spec(c, v, ""), v, a);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("succeeded"), "{}", r.stdout);
    all_on(c, v);
}

#[test]
fn an_agent_of_the_previous_release_works_with_this_coordinator() {
    let Some((_, old_agent)) = previous_release() else {
        return;
    };
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    c.agent_binary = Some(old_agent);
    c.add_agent("web-1", "role=web", "").unwrap();
    c.agent_binary = None;
    c.add_agent("web-2", "role=web", "").unwrap();
    let a = ready(&c);
    // This tree's spec has fields the older agent does not know: at their
    // defaults they are left out of what it is sent.
    for v in ["1", "2"] {
        deploy_ok(&c, v, &a);
    }
    // One it would have to honour is refused before anything is staged,
    // naming the host.
    let r = deploy(
        &c,
        &spec(&c, "3", "\n[drain]\nwait_for = \"delay\"\n"),
        "3",
        &a,
    );
    assert!(!r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("host web-1 runs an agent without `drain.balancers`, which `drain.wait_for`"),
        "{}",
        r.stderr
    );
    all_on(&c, "2");
    // Once its agent is this tree's, the same spec goes through.
    c.agent("web-1").proc.as_mut().unwrap().stop();
    c.agent("web-1").binary = None;
    c.start_agent("web-1").unwrap();
    c.wait_state("web-1", "ready", Duration::from_secs(20));
    let r = deploy(
        &c,
        &spec(&c, "3", "\n[drain]\nwait_for = \"delay\"\n"),
        "3",
        &a,
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    all_on(&c, "3");
}

#[test]
fn this_agent_works_with_a_coordinator_of_the_previous_release() {
    let Some((old_coordinator, _)) = previous_release() else {
        return;
    };
    let mut c = Cluster::start(CoordinatorOptions {
        binary: Some(old_coordinator),
        ..Default::default()
    })
    .unwrap();
    c.add_agent("web-1", "role=web", "").unwrap();
    c.add_agent("web-2", "role=web", "").unwrap();
    let a = ready(&c);
    for v in ["1", "2"] {
        deploy_ok(&c, v, &a);
    }
    // A bad version is rolled back by the older coordinator through this
    // agent.
    let bad = spec(&c, "3", "").display().to_string();
    let text = std::fs::read_to_string(&bad).unwrap().replace(
        "\"--app-version\", \"3\"",
        "\"--app-version\", \"3\", \"--crash-on-start\"",
    );
    std::fs::write(&bad, text).unwrap();
    let r = deploy(&c, Path::new(&bad), "3", &a);
    assert!(!r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    all_on(&c, "2");
}
