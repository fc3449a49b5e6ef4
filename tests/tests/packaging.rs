//! Installing Cutover: the .deb packages (built by cargo-deb from the
//! binaries this test run built) hold the binaries, units and configs at
//! the right paths and install into a throwaway root; `install.sh`
//! installs, is idempotent, and uninstalls, also into a throwaway root.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover_tests::bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_sh_installs_idempotently_and_uninstalls() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let bins = bin("cutover").parent().unwrap().to_path_buf();
    let script = repo().join("packaging/install.sh");
    let first = run(Command::new(&script)
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--root")
        .arg(r));
    assert!(first.contains("created user cutover"), "{first}");
    for (path, want) in [
        ("usr/bin/cutover-agent", 0o755),
        ("usr/bin/cutover", 0o755),
        ("etc/systemd/system/cutover-agent.service", 0o644),
        ("etc/systemd/system/cutover-coordinator.service", 0o644),
        ("etc/cutover/agent.toml", 0o640),
        ("etc/cutover/coordinator.toml", 0o640),
        ("usr/lib/sysctl.d/60-cutover-agent.conf", 0o644),
        // Traversable by apps' own users (security.rs runs one), as the
        // unit's StateDirectoryMode.
        ("var/lib/cutover", 0o711),
        ("var/lib/cutover-coordinator", 0o700),
    ] {
        assert_eq!(mode(&r.join(path)), want, "{path}");
    }
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(passwd.contains("cutover:"), "{passwd}");
    // The installed binary is the built one, and runs.
    let v = run(Command::new(r.join("usr/bin/cutover")).arg("--version"));
    assert!(v.starts_with("cutover "), "{v}");

    // A local edit of a config survives a second run, which changes
    // nothing else.
    std::fs::write(r.join("etc/cutover/agent.toml"), "state_dir = \"/srv/x\"\n").unwrap();
    let before = files_under(r);
    let second = run(Command::new(&script)
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--root")
        .arg(r));
    assert!(!second.contains("installed"), "{second}");
    assert_eq!(files_under(r), before);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/cutover/agent.toml")).unwrap(),
        "state_dir = \"/srv/x\"\n"
    );

    // Uninstall keeps configs and state; --purge takes them too.
    run(Command::new(&script)
        .arg("--uninstall")
        .arg("--root")
        .arg(r));
    assert!(!r.join("usr/bin/cutover-agent").exists());
    assert!(
        !r.join("etc/systemd/system/cutover-coordinator.service")
            .exists()
    );
    assert!(r.join("etc/cutover/agent.toml").exists());
    run(Command::new(&script)
        .args(["--uninstall", "--purge", "--root"])
        .arg(r));
    assert!(!r.join("etc/cutover").exists());
    assert!(!r.join("var/lib/cutover").exists());

    // Missing binaries: a clear refusal, nothing installed.
    let empty = tempfile::tempdir().unwrap();
    let root2 = tempfile::tempdir().unwrap();
    let out = Command::new(&script)
        .arg("--bin-dir")
        .arg(empty.path())
        .arg("--root")
        .arg(root2.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cutover-agent not found"));
    assert!(files_under(root2.path()).is_empty());
}

/// Builds the .deb of `package` with cargo-deb from the binaries of this
/// test run (no second build): they are placed where cargo-deb looks.
fn build_deb(package: &str, bins: &[&str], work: &Path) -> PathBuf {
    let target = work.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    for b in bins {
        let to = target.join("release").join(b);
        std::fs::copy(bin(b), &to).unwrap();
        // As a release build ships them (cargo deb strips; --no-strip
        // below because the copies are stripped here, where `strip`
        // exists: binutils comes with the Rust toolchain's linker).
        let _ = Command::new("strip").arg(&to).status();
    }
    let out_dir = work.join("debs");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("cargo")
        .args([
            "deb",
            "-p",
            package,
            "--no-build",
            "--no-strip",
            "--fast",
            "--offline",
            "-o",
        ])
        .arg(&out_dir)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo deb -p {package} failed (is cargo-deb installed? `cargo install cargo-deb --locked`):\n{text}"
    );
    let deb = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{package}_"))
        })
        .expect("a .deb");
    // As packaging/build-debs.sh finishes them.
    run(Command::new(repo().join("packaging/finish-deb.sh"))
        .arg(&deb)
        .env("DEB_COMPRESS", "gzip"));
    deb
}

#[test]
fn the_debs_hold_the_right_files_and_install_into_a_throwaway_root() {
    // Packaging tools a new user's machine may lack: `.ci/run` installs
    // them and requires them (CUTOVER_REQUIRE_REAL=1).
    if !cutover_tests::real_component("cargo-deb") || !cutover_tests::real_component("dpkg-deb") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let agent = build_deb("cutover-agent", &["cutover-agent"], work.path());
    let coord = build_deb("cutover-coordinator", &["cutover"], work.path());

    let list = |deb: &Path| run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let a = list(&agent);
    let bin_line = a
        .lines()
        .find(|l| l.ends_with("./usr/bin/cutover-agent"))
        .unwrap_or_else(|| panic!("no binary in the agent package:\n{a}"));
    assert!(
        bin_line.starts_with("-rwxr-xr-x 0/0") || bin_line.starts_with("-rwxr-xr-x root/root"),
        "{bin_line}"
    );
    for want in [
        "./etc/cutover/agent.toml",
        "./usr/lib/systemd/system/cutover-agent.service",
        "./usr/lib/sysctl.d/60-cutover-agent.conf",
        "./usr/share/man/man1/cutover-agent.1",
        "./usr/share/man/man1/cutover-agent-enroll.1",
        "./usr/share/bash-completion/completions/cutover-agent",
    ] {
        assert!(
            a.contains(want),
            "{want} missing from the agent package:\n{a}"
        );
    }
    let c = list(&coord);
    for want in [
        "./usr/bin/cutover",
        "./etc/cutover/coordinator.toml",
        "./usr/lib/systemd/system/cutover-coordinator.service",
        "./usr/lib/sysusers.d/cutover-coordinator.conf",
        "./usr/share/man/man1/cutover.1",
        "./usr/share/man/man1/cutover-deploy.1",
        "./usr/share/bash-completion/completions/cutover",
        "./usr/share/zsh/vendor-completions/_cutover",
    ] {
        assert!(
            c.contains(want),
            "{want} missing from the coordinator package:\n{c}"
        );
    }
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(&agent));
    assert!(fields.contains("Package: cutover-agent"), "{fields}");
    assert!(
        fields.contains("Depends:") && fields.contains("systemd"),
        "{fields}"
    );
    // The configs are conffiles: upgrades keep local edits.
    let ctl = work.path().join("ctl");
    run(Command::new("dpkg-deb").arg("-e").arg(&agent).arg(&ctl));
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert!(conffiles.contains("/etc/cutover/agent.toml"), "{conffiles}");
    // What lintian asks of a package: sums of its files (not of its
    // conffiles), a changelog, maintainer scripts that leave /etc/passwd
    // to the tools that own it.
    let sums = std::fs::read_to_string(ctl.join("md5sums")).unwrap();
    assert!(sums.contains("  usr/bin/cutover-agent\n"), "{sums}");
    assert!(!sums.contains("etc/cutover/agent.toml"), "{sums}");
    assert!(a.contains("./usr/share/doc/cutover-agent/changelog"), "{a}");
    let cctl = work.path().join("cctl");
    run(Command::new("dpkg-deb").arg("-e").arg(&coord).arg(&cctl));
    for script in ["postinst", "postrm"] {
        let text = std::fs::read_to_string(cctl.join(script)).unwrap();
        assert!(!text.contains("/etc/passwd"), "{script}:\n{text}");
        assert!(!text.contains("sudo"), "{script}:\n{text}");
    }
    // Lintian (Debian's package checker, installed by `.ci/run`): no
    // error or warning on either package (the overrides shipped say why
    // the two tags left are meant).
    if cutover_tests::real_component("lintian") {
        for deb in [&agent, &coord] {
            let out = Command::new("lintian")
                .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
                .arg(deb)
                .output()
                .expect("running lintian");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            let tags: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
                .collect();
            assert!(
                out.status.success() && tags.is_empty(),
                "lintian on {}:\n{text}",
                deb.display()
            );
        }
    }
    // The unit the package ships is the one the repository tests.
    let unit = work.path().join("unit");
    run(Command::new("dpkg-deb").arg("-x").arg(&agent).arg(&unit));
    assert_eq!(
        std::fs::read(unit.join("usr/lib/systemd/system/cutover-agent.service")).unwrap(),
        std::fs::read(repo().join("packaging/systemd/cutover-agent.service")).unwrap()
    );

    // Install both into an empty root: dpkg's database of its own, the
    // maintainer scripts run against that root, services not started.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "usr/sbin",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(r.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n").unwrap();
    std::fs::set_permissions(
        r.join("usr/sbin/policy-rc.d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i"])
        .arg(&agent)
        .arg(&coord));
    assert!(out.contains("Next: enroll this host"), "{out}");
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["-s", "cutover-agent", "cutover-coordinator"]));
    assert_eq!(
        status.matches("Status: install ok installed").count(),
        2,
        "{status}"
    );
    assert!(r.join("usr/bin/cutover-agent").exists());
    assert!(r.join("usr/bin/cutover").exists());
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("cutover:"),
        "the coordinator's user: {passwd}"
    );
    assert_eq!(mode(&r.join("var/lib/cutover-coordinator")), 0o700);
    assert_eq!(mode(&r.join("var/lib/cutover")), 0o711);
    // Every installed file is as packaged.
    let verify = Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--verify", "cutover-agent", "cutover-coordinator"])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty(),
        "dpkg --verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // State as the daemons leave it: a host identity, a CA key.
    std::fs::create_dir_all(r.join("var/lib/cutover/identity")).unwrap();
    std::fs::write(r.join("var/lib/cutover/identity/host.key"), "k").unwrap();
    std::fs::create_dir_all(r.join("var/lib/cutover-coordinator/pki")).unwrap();
    std::fs::write(r.join("var/lib/cutover-coordinator/pki/ca.key"), "k").unwrap();
    // Removal takes the files and keeps the configs and state (until purge).
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "-r", "cutover-agent"]));
    assert!(!r.join("usr/bin/cutover-agent").exists());
    assert!(r.join("etc/cutover/agent.toml").exists());
    assert!(r.join("var/lib/cutover/identity/host.key").exists());
    // Purge takes everything, as install.sh --purge does: a host purged
    // and installed again can enroll again; a coordinator starts a new
    // cluster (docs/operator-guide.md says to back up first).
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args([
            "--force-script-chrootless",
            "--purge",
            "cutover-agent",
            "cutover-coordinator",
        ]));
    assert!(!r.join("var/lib/cutover").exists());
    assert!(!r.join("var/lib/cutover-coordinator").exists());
    assert!(!r.join("etc/cutover/agent.toml").exists());
    assert!(!r.join("etc/cutover/coordinator.toml").exists());
}
