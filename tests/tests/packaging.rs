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
    std::fs::create_dir_all(r.join("var/lib/cutover/agent/identity")).unwrap();
    std::fs::write(r.join("var/lib/cutover/agent/identity/host.key"), "k").unwrap();
    std::fs::create_dir_all(r.join("var/lib/cutover-coordinator/pki")).unwrap();
    std::fs::write(r.join("var/lib/cutover-coordinator/pki/ca.key"), "k").unwrap();
    // Removal takes the files and keeps the configs and state (until purge).
    run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "-r", "cutover-agent"]));
    assert!(!r.join("usr/bin/cutover-agent").exists());
    assert!(r.join("etc/cutover/agent.toml").exists());
    assert!(r.join("var/lib/cutover/agent/identity/host.key").exists());
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

/// A Debian root made for one test (`mmdebstrap`, the `apt` variant: the
/// essential packages and apt, nothing else): commands run in it with
/// `chroot`; its processes are killed and its `/proc` unmounted when
/// dropped.
struct DebianRoot {
    path: PathBuf,
    proc_mounted: bool,
}

impl DebianRoot {
    fn make(path: PathBuf) -> DebianRoot {
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        // The suite of this machine: the binaries under test link its glibc.
        let suite = os
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .unwrap_or("bookworm")
            .trim_matches('"')
            .to_string();
        run(Command::new("mmdebstrap")
            .args(["--variant=apt", "--quiet", "--skip=cleanup/apt/lists"])
            .arg(&suite)
            .arg(&path)
            .arg("http://deb.debian.org/debian"));
        let mut root = DebianRoot {
            path,
            proc_mounted: false,
        };
        // The daemons the packages bring are not started by their
        // maintainer scripts (there is no init here): as on an image build.
        let policy = root.file("/usr/sbin/policy-rc.d");
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n").unwrap();
        std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        run(Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.file("/proc")));
        root.proc_mounted = true;
        root
    }

    fn file(&self, p: &str) -> PathBuf {
        self.path.join(p.trim_start_matches('/'))
    }

    /// `args` run in the root as root, with a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.path)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env(
                "CUTOVER_CLI_CONFIG",
                "/var/lib/cutover-coordinator/pki/operators/admin.toml",
            );
        c
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.cmd(args))
    }

    /// A daemon as its unit starts it: `ExecStartPre=`, then `ExecStart=`
    /// as the unit's `User=` (setpriv, which execs as systemd does).
    fn start_unit(&self, unit: &str, log: &Path) -> std::process::Child {
        let text =
            std::fs::read_to_string(self.file(&format!("/usr/lib/systemd/system/{unit}"))).unwrap();
        let key = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        };
        let user = key("User=").map(|u| u[0].clone());
        let as_user = |cmd: Vec<String>| -> Vec<String> {
            match &user {
                Some(u) => [
                    "setpriv".to_string(),
                    format!("--reuid={u}"),
                    format!("--regid={u}"),
                    "--init-groups".into(),
                ]
                .into_iter()
                .chain(cmd)
                .collect(),
                None => cmd,
            }
        };
        if let Some(pre) = key("ExecStartPre=") {
            let pre = as_user(pre);
            self.run(&pre.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let start = as_user(key("ExecStart=").expect("ExecStart="));
        let out = std::fs::File::create(log).unwrap();
        self.cmd(&start.iter().map(String::as_str).collect::<Vec<_>>())
            .env("CUTOVER_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    /// The processes whose root is this one.
    fn processes(&self) -> Vec<u32> {
        let me = std::fs::canonicalize(&self.path).unwrap_or(self.path.clone());
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                (std::fs::read_link(e.path().join("root")).ok()? == me).then_some(pid)
            })
            .collect()
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if self.proc_mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.file("/proc"))
                .status();
        }
    }
}

/// Stops a daemon as `systemctl stop` does (SIGTERM), waiting for it.
fn stop(mut child: std::process::Child, log: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = cutover_tests::poll(
        "the daemon to stop",
        std::time::Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    assert!(
        status.success(),
        "stopped with {status}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// As an operator on a clean Debian machine: both packages installed
/// with apt (their dependencies from Debian's mirror), the commands of
/// docs/operator-guide.md (no sudo: a minimal Debian has none), the
/// daemons started as their units start them, a host enrolled, two
/// deployments, the host taken out of the fleet by the decommission
/// runbook, then remove and purge, and a purged coordinator installed
/// again starts a new cluster.
#[test]
fn with_apt_on_a_clean_debian_root_an_operator_installs_deploys_decommissions_and_purges() {
    // Needs mmdebstrap and Debian's mirror (`.ci/run` installs it and
    // requires it), besides the packaging tools.
    if !cutover_tests::real_component("mmdebstrap")
        || !cutover_tests::real_component("cargo-deb")
        || !cutover_tests::real_component("dpkg-deb")
    {
        return;
    }
    use cutover_tests::release::{demo_tarball, free_port};
    let work = tempfile::tempdir().unwrap();
    let agent_deb = build_deb("cutover-agent", &["cutover-agent"], work.path());
    let coord_deb = build_deb("cutover-coordinator", &["cutover"], work.path());
    let r = DebianRoot::make(work.path().join("root"));
    for deb in [&agent_deb, &coord_deb] {
        std::fs::copy(
            deb,
            r.file(&format!(
                "/tmp/{}",
                deb.file_name().unwrap().to_string_lossy()
            )),
        )
        .unwrap();
    }
    let deb_in_root = |deb: &Path| format!("/tmp/{}", deb.file_name().unwrap().to_string_lossy());
    let (agent_pkg, coord_pkg) = (deb_in_root(&agent_deb), deb_in_root(&coord_deb));

    // Install: apt resolves the dependencies (systemd) from the mirror.
    let out = r.run(&[
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        &coord_pkg,
        &agent_pkg,
    ]);
    assert!(out.contains("Next: create the cluster CA"), "{out}");
    assert!(out.contains("Next: enroll this host"), "{out}");
    let verify = r.run(&["dpkg", "--verify", "cutover-agent", "cutover-coordinator"]);
    assert!(verify.trim().is_empty(), "dpkg --verify: {verify}");
    assert!(
        r.run(&["getent", "passwd", "cutover"])
            .starts_with("cutover:")
    );
    assert!(!r.file("/var/log/cutover").exists(), "nothing logs there");
    assert!(r.file("/usr/share/man/man1/cutover-deploy.1.gz").exists());

    // The coordinator, configured and started as the guide says.
    let port = free_port();
    let conf = r.file("/etc/cutover/coordinator.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("listen = \"0.0.0.0:7443\""), "{text}");
    std::fs::write(
        &conf,
        text.replace(
            "listen = \"0.0.0.0:7443\"",
            &format!("listen = \"127.0.0.1:{port}\"\nadvertise_url = \"https://127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    // As the guide says, as the coordinator's user.
    let ca_init = || {
        r.run(&[
            "runuser",
            "-u",
            "cutover",
            "--",
            "cutover",
            "ca",
            "init",
            "--config",
            "/etc/cutover/coordinator.toml",
        ])
    };
    let init = ca_init();
    let fingerprint = init
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no fingerprint in:\n{init}"))
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    let coord_log = work.path().join("coordinator.log");
    let coordinator = r.start_unit("cutover-coordinator.service", &coord_log);
    cutover_tests::poll(
        "the coordinator to listen",
        std::time::Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let log_text = std::fs::read_to_string(&coord_log).unwrap_or_default();
    assert!(
        !log_text.contains("made for another CA"),
        "a misleading first-start line:\n{log_text}"
    );
    let who = r.run(&["cutover", "whoami"]);
    assert!(who.contains("admin"), "{who}");

    // A host enrolled as root, its agent started as its unit starts it.
    let enroll_host = |id: &str| {
        let token = r.run(&[
            "cutover", "token", "create", "--labels", "role=web", "--ttl", "1h",
        ]);
        let token = token.lines().next().unwrap().trim().to_string();
        let file = r.file("/root/web.token");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let url = format!("https://127.0.0.1:{port}");
        r.run(&[
            "cutover-agent",
            "enroll",
            "--coordinator",
            &url,
            "--token-file",
            "/root/web.token",
            "--ca-fingerprint",
            &fingerprint,
            "--host-id",
            id,
        ]);
        std::fs::remove_file(&file).unwrap();
    };
    enroll_host("web-1");
    let agent_log = work.path().join("agent.log");
    let agent = r.start_unit("cutover-agent.service", &agent_log);
    cutover_tests::poll("web-1 ready", std::time::Duration::from_secs(30), || {
        let out = r.cmd(&["cutover", "hosts", "-o", "json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|h| h["host"] == "web-1" && h["state"] == "ready")
            .then_some(())
    });

    // Two deployments of a service run as `nobody` (the host's default
    // policy refuses root), its artifact over HTTP.
    let artifacts = work.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let tarball = demo_tarball(&artifacts, "web.tar");
    let server = cutover_tests::artifacts::ArtifactServer::start(artifacts.clone());
    let app_port = free_port();
    // This root has no CA certificates (`ca-certificates` is recommended,
    // not required): an https artifact is refused by name; http works.
    let https_refused = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).contains("install Debian's ca-certificates")
    };
    let mut tried_https = false;
    for version in ["1.0.0", "1.0.0", "1.0.1"] {
        std::fs::write(
            r.file("/root/web.toml"),
            format!(
                r#"service = "web"
[run]
command = ["bin/demo-service", "--app-version", "{version}"]
user = "nobody"
[[listen]]
name = "http"
address = "127.0.0.1:{app_port}"
[probes.readiness]
http = {{ listener = "http", path = "/healthz" }}
interval = "200ms"
[swap]
min_ready = "300ms"
[strategy]
kind = "rolling"
[targets]
selector = "role=web"
"#
            ),
        )
        .unwrap();
        let scheme = if tried_https { "http" } else { "https" };
        let url = format!("{scheme}://{}/web.tar", server.addr);
        let out = r
            .cmd(&[
                "cutover",
                "deploy",
                "/root/web.toml",
                "--version",
                version,
                "--artifact",
                &url,
                "--sha256",
                &tarball.sha256,
                "--watch",
            ])
            .output()
            .unwrap();
        if !tried_https {
            tried_https = true;
            assert!(
                !out.status.success() && https_refused(&out),
                "deploy over https without CA certificates: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        assert!(
            out.status.success(),
            "deploy {version}: {}{}\n{}\nagent:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&r.cmd(&["sh", "-c", "namei -l /var/lib/cutover/agent/services/web/releases/*/bin/demo-service; id nobody"]).output().unwrap().stdout),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        let (code, body) = cutover_tests::http_get(&format!("127.0.0.1:{app_port}"), "/")
            .expect("the app answers");
        assert_eq!(
            (
                code,
                body.trim().starts_with(&format!("version={version} "))
            ),
            (200, true),
            "{body}"
        );
    }
    let services = r.run(&["cutover", "services", "-o", "json"]);
    assert!(services.contains("1.0.1"), "{services}");
    // The app reached its release as `nobody`; its output is root's alone.
    assert_eq!(mode(&r.file("/var/lib/cutover/agent")), 0o711);
    let logs = r.file("/var/lib/cutover/agent/services/web/logs");
    assert_eq!(mode(&logs), 0o700);
    for e in std::fs::read_dir(&logs).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }

    // The decommission runbook: drained and its services stopped, removed
    // from the fleet, the agent stopped and purged.
    r.run(&["cutover", "drain", "web-1", "--stop"]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", app_port)).is_err(),
        "the app still listens after drain --stop"
    );
    r.run(&["cutover", "hosts", "remove", "web-1"]);
    stop(agent, &agent_log);
    r.run(&["apt-get", "purge", "-y", "cutover-agent"]);
    assert!(!r.file("/usr/bin/cutover-agent").exists());
    assert!(
        !r.file("/var/lib/cutover").exists(),
        "the host identity and releases go"
    );
    assert!(!r.file("/etc/cutover/agent.toml").exists());
    assert!(
        r.processes().iter().all(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            !comm.contains("demo-service")
        }),
        "an app outlived the decommission"
    );
    // Installed again, the host enrolls again (same id: the old one was
    // removed), and its agent starts.
    r.run(&[
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        &agent_pkg,
    ]);
    enroll_host("web-1");
    let agent = r.start_unit("cutover-agent.service", &agent_log);
    cutover_tests::poll("web-1 back", std::time::Duration::from_secs(30), || {
        let out = r.cmd(&["cutover", "hosts", "-o", "json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|h| h["host"] == "web-1" && h["state"] == "ready")
            .then_some(())
    });
    stop(agent, &agent_log);
    stop(coordinator, &coord_log);

    // Remove keeps the configs and the state: the cluster CA survives.
    r.run(&[
        "apt-get",
        "remove",
        "-y",
        "cutover-coordinator",
        "cutover-agent",
    ]);
    assert!(!r.file("/usr/bin/cutover").exists());
    assert!(r.file("/etc/cutover/coordinator.toml").exists());
    assert!(r.file("/var/lib/cutover-coordinator/pki/ca.key").exists());
    assert!(r.file("/var/lib/cutover/agent/identity").exists());
    // Purge takes everything; installed again, `ca init` makes a new CA.
    r.run(&[
        "apt-get",
        "purge",
        "-y",
        "cutover-coordinator",
        "cutover-agent",
    ]);
    for gone in [
        "/var/lib/cutover-coordinator",
        "/var/lib/cutover",
        "/etc/cutover",
    ] {
        assert!(!r.file(gone).exists(), "{gone} is left after purge");
    }
    r.run(&[
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        &coord_pkg,
    ]);
    let again = ca_init();
    assert!(!again.contains(&fingerprint), "a new CA: {again}");
}
