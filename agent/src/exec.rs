//! The exec of a new instance, done by the agent's own forked child.
//!
//! `LISTEN_PID` must be the app's own pid, which does not exist before
//! fork. systemd writes it after fork; so does this module: everything the
//! exec needs (the resolved path, argv, the environment with a
//! `LISTEN_PID=` slot) is built before fork, and [`Exec::exec`], run in
//! the child just before it becomes the app, writes the child's pid into
//! the slot and calls `execve`. Nothing allocates after fork.
//!
//! (Until stop 12 a shim did this: the child exec'd the agent itself as
//! `cutover-agent exec-shim`, which set `LISTEN_PID` and exec'd the app.
//! Loading the 7 MB agent only for that cost about 1.2 ms of CPU on every
//! instance start, in the middle of a swap.)

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

/// A program that cannot be exec'd as given.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` is not an executable file in PATH ({path})")]
    NotInPath { program: String, path: String },
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
}

/// An exec prepared before fork.
pub struct Exec {
    path: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    env: Vec<*const c_char>,
    /// `LISTEN_PID=` and room for any pid and its NUL; its pointer goes
    /// into `env[slot]` in the child, once the pid is written.
    listen_pid: Option<(usize, [u8; 32])>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the same value
// and never changed after construction; nothing is shared.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec").field("path", &self.path).finish()
    }
}

impl Exec {
    /// Prepares `program` with `args` and exactly `env` (plus `LISTEN_PID`
    /// when `listen_pid`). A program without a `/` is looked up in `env`'s
    /// `PATH`, as the shell would in the app's environment.
    pub fn new<'a>(
        program: &Path,
        args: impl IntoIterator<Item = &'a str>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        listen_pid: bool,
    ) -> Result<Exec, ExecError> {
        let cstring = |b: &[u8]| {
            CString::new(b).map_err(|_| ExecError::Nul(String::from_utf8_lossy(b).into_owned()))
        };
        let env: Vec<(&str, &str)> = env
            .into_iter()
            .filter(|(k, _)| *k != "LISTEN_PID")
            .collect();
        let search = env
            .iter()
            .find(|(k, _)| *k == "PATH")
            .map_or("", |(_, v)| *v);
        let path = resolve(program, search)?;
        let mut strings = vec![cstring(program.as_os_str().as_bytes())?];
        for a in args {
            strings.push(cstring(a.as_bytes())?);
        }
        let argc = strings.len();
        for (k, v) in &env {
            strings.push(cstring(format!("{k}={v}").as_bytes())?);
        }
        let mut argv: Vec<*const c_char> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        let listen_pid = listen_pid.then(|| {
            envp.push(std::ptr::null());
            let mut slot = [0u8; 32];
            slot[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
            (envp.len() - 1, slot)
        });
        envp.push(std::ptr::null());
        Ok(Exec {
            path: cstring(path.as_os_str().as_bytes())?,
            _strings: strings,
            argv,
            env: envp,
            listen_pid,
        })
    }

    /// The path that will be exec'd.
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.path.as_bytes()))
    }

    /// Makes `cmd` exec this program from its forked child, after every
    /// hook registered before (stdio, user, working directory, process
    /// group, fd mappings): call it last. `cmd`'s own program, arguments
    /// and environment are then not used; an exec that fails is `spawn`'s
    /// error.
    pub fn install(mut self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook only writes into memory it owns and calls
        // getpid and execve, which are async-signal-safe; it allocates
        // nothing (`last_os_error` is a plain errno).
        unsafe { cmd.pre_exec(move || Err(self.exec())) };
    }

    /// Becomes the program; returns only the reason it could not.
    ///
    /// # Safety
    /// Only in a child just forked from this process: it writes the
    /// caller's pid into `LISTEN_PID` and calls `execve`.
    unsafe fn exec(&mut self) -> std::io::Error {
        if let Some((at, slot)) = &mut self.listen_pid {
            // SAFETY: getpid cannot fail and touches no memory.
            let pid = unsafe { libc::getpid() } as u32;
            write_decimal(&mut slot[LISTEN_PID.len()..], pid);
            self.env[*at] = slot.as_ptr().cast();
        }
        // SAFETY: every pointer is to a NUL-terminated string owned by
        // `self`, and both arrays end with a null pointer.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.env.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// `n` in decimal followed by a NUL, at the start of `out`, without
/// allocating.
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
}

/// A program with a `/` is used as given; one without is the first
/// executable file of that name in `search` (a `PATH` value).
fn resolve(program: &Path, search: &str) -> Result<PathBuf, ExecError> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    search
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| ExecError::NotInPath {
            program: program.display().to_string(),
            path: search.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal_with_a_nul() {
        for (n, want) in [
            (0u32, "0"),
            (7, "7"),
            (40213, "40213"),
            (u32::MAX, "4294967295"),
        ] {
            let mut out = [0xffu8; 11];
            write_decimal(&mut out, n);
            assert_eq!(&out[..want.len()], want.as_bytes());
            assert_eq!(out[want.len()], 0);
        }
    }

    #[test]
    fn a_bare_name_is_found_in_the_apps_path_and_a_missing_one_is_named() {
        let found = resolve(Path::new("sh"), "/nonexistent:/bin:/usr/bin").unwrap();
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        let e = resolve(Path::new("no-such-program-here"), "/bin:/usr/bin").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`no-such-program-here` is not an executable file in PATH (/bin:/usr/bin)"
        );
        assert_eq!(
            resolve(Path::new("./bin/app"), "").unwrap(),
            Path::new("./bin/app")
        );
    }

    #[test]
    fn the_child_gets_exactly_the_environment_given_and_its_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("echo \"pid=$$\"; env | sort > {}", out.display());
        let exec = Exec::new(
            Path::new("sh"),
            ["-c", script.as_str()],
            [
                ("PATH", "/usr/bin:/bin"),
                ("A", "1"),
                ("LISTEN_PID", "stale"),
            ],
            true,
        )
        .unwrap();
        let mut cmd = std::process::Command::new(exec.path());
        cmd.stdout(std::process::Stdio::piped());
        exec.install(&mut cmd);
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("pid={pid}")
        );
        let env = std::fs::read_to_string(&out).unwrap();
        let vars: Vec<&str> = env
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        assert_eq!(
            vars,
            [
                "A=1",
                format!("LISTEN_PID={pid}").as_str(),
                "PATH=/usr/bin:/bin"
            ]
        );
    }

    #[test]
    fn a_program_that_cannot_run_is_an_error_of_the_spawn() {
        let dir = tempfile::tempdir().unwrap();
        let not_exec = dir.path().join("app");
        std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
        let exec = Exec::new(&not_exec, [], [], false).unwrap();
        let mut cmd = std::process::Command::new(exec.path());
        exec.install(&mut cmd);
        let e = cmd.spawn().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
}
