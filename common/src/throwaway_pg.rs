//! For tests: a throwaway PostgreSQL cluster from the machine's own
//! packages (Debian's `postgresql`: `initdb`, `pg_ctl`), run as an
//! unprivileged user in a temporary directory, on a free loopback port,
//! with password (SCRAM) authentication. Stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct ThrowawayPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The password of user `cutover`, also in [`ThrowawayPg::password_file`].
    password: String,
    uid: Option<(u32, u32)>,
}

/// Where Debian puts the newest PostgreSQL's programs (or
/// `CUTOVER_PG_BIN`).
pub fn find_bin() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CUTOVER_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl ThrowawayPg {
    /// Starts a cluster, or `None` (with a line saying so) when PostgreSQL
    /// is not installed; a failure when `CUTOVER_REQUIRE_REAL=1` (CI
    /// installs it) or when it is installed but cannot start.
    pub fn start_or_skip() -> Option<ThrowawayPg> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var("CUTOVER_REQUIRE_REAL").as_deref() != Ok("1"),
                "PostgreSQL is required here (CUTOVER_REQUIRE_REAL=1) but not installed"
            );
            eprintln!(
                "skipped: PostgreSQL is not installed (`.ci/run` installs Debian's `postgresql`)"
            );
            return None;
        };
        Some(Self::start(&bin).unwrap_or_else(|e| panic!("starting a throwaway PostgreSQL: {e}")))
    }

    fn start(bin: &Path) -> Result<ThrowawayPg, String> {
        let dir = tempfile::Builder::new()
            .prefix("cutover-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // PostgreSQL refuses to run as root: as `nobody` then.
        let uid = if rustix::process::geteuid().is_root() {
            Some((65534, 65534))
        } else {
            None
        };
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let pwfile = dir.path().join("initdb.pw");
        std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
        if let Some((u, g)) = uid {
            for p in [dir.path(), &pwfile] {
                rustix::fs::chown(
                    p,
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(g)),
                )
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let data = dir.path().join("data");
        let mut this = ThrowawayPg {
            bin: bin.into(),
            port: 0,
            password,
            uid,
            dir,
        };
        this.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "cutover".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", pwfile.display()).as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        // A few tries: the port chosen may be taken in between.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| e.to_string())?;
            let opts = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=200",
                this.dir.path().display()
            );
            let log = this.dir.path().join("server.log");
            match this.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            ) {
                Ok(()) => {
                    this.port = port;
                    return Ok(this);
                }
                Err(e) => {
                    last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
        Err(last)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((u, g)) = self.uid {
            use std::os::unix::process::CommandExt;
            c.uid(u).gid(g);
        }
        c.current_dir(self.dir.path())
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Creates database `name` (owned by `cutover`).
    pub fn create_db(&self, name: &str) {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "cutover".as_ref(),
                name.as_ref(),
            ],
        )
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    }

    /// Runs `sql` in database `name` with `psql`; its output.
    pub fn sql(&self, name: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "cutover",
                "-d",
                name,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The URL of database `name` (no password: see
    /// [`ThrowawayPg::password_file`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://cutover@127.0.0.1:{}/{name}", self.port)
    }

    /// A file holding the password (mode 0600, readable by this process).
    pub fn password_file(&self) -> PathBuf {
        let p = self.dir.path().join("password");
        if !p.exists() {
            std::fs::write(&p, format!("{}\n", self.password)).expect("writing the password file");
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
        p
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .args([
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
