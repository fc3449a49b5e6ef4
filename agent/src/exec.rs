//! The exec of a new instance, done by the agent's own forked child.
//!
//! `LISTEN_PID` must be the app's own pid, which does not exist before
//! fork. systemd writes it after fork; so does this module: everything the
//! exec needs (argv, the environment with a `LISTEN_PID=` slot) is built
//! before fork, and `Exec::exec`, run in the child just before it
//! becomes the app, writes the child's pid into the slot, points `environ`
//! at the new environment and calls `execvp`, exactly as std's own spawn
//! does after its hooks. So the program is looked up in the app's `PATH`
//! from its working directory, entries it may not execute are skipped,
//! and a script without `#!` runs through `/bin/sh`, as before. Nothing
//! allocates after fork.
//!
//! (Until stop 12 a shim did this: the child exec'd the agent itself as
//! `cutover-agent exec-shim`, which set `LISTEN_PID` and exec'd the app.
//! Loading the 7 MB agent only for that cost about 1.2 ms of CPU on every
//! instance start, in the middle of a swap.)

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

unsafe extern "C" {
    /// The process environment that `execvp` passes on (and reads `PATH`
    /// from).
    static mut environ: *const *const c_char;
}

/// A program that cannot be exec'd as given.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
}

/// An exec prepared before fork.
pub struct Exec {
    program: CString,
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
        f.debug_struct("Exec")
            .field("program", &self.program)
            .finish()
    }
}

impl Exec {
    /// Prepares `program` with `args` and exactly `env` (plus `LISTEN_PID`
    /// when `listen_pid`; a `LISTEN_PID` in `env` is dropped). A program
    /// without a `/` is looked up in `env`'s `PATH` by `execvp`.
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
            program: cstring(program.as_os_str().as_bytes())?,
            _strings: strings,
            argv,
            env: envp,
            listen_pid,
        })
    }

    /// The program, as given.
    pub fn program(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.program.as_bytes()))
    }

    /// Makes `cmd` exec this program from its forked child, after every
    /// hook registered before (stdio, user, working directory, process
    /// group, fd mappings): call it last. `cmd`'s own program, arguments
    /// and environment are then not used; an exec that fails is `spawn`'s
    /// error.
    pub fn install(mut self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook only writes into memory it owns (and, in the
        // child, `environ`, as std's spawn does) and calls getpid and
        // execvp, as std's spawn does; it allocates nothing
        // (`last_os_error` is a plain errno).
        unsafe { cmd.pre_exec(move || Err(self.exec())) };
    }

    /// Becomes the program; returns only the reason it could not.
    ///
    /// # Safety
    /// Only in a child just forked from this process: it writes the
    /// caller's pid into `LISTEN_PID`, replaces `environ` and calls
    /// `execvp`.
    unsafe fn exec(&mut self) -> std::io::Error {
        if let Some((at, slot)) = &mut self.listen_pid {
            // SAFETY: getpid cannot fail and touches no memory.
            let pid = unsafe { libc::getpid() } as u32;
            write_decimal(&mut slot[LISTEN_PID.len()..], pid);
            self.env[*at] = slot.as_ptr().cast();
        }
        // SAFETY: every pointer is to a NUL-terminated string owned by
        // `self`, and both arrays end with a null pointer. `environ` is
        // this forked child's own; std sets it the same way before its
        // `execvp`, which this call replaces.
        unsafe {
            environ = self.env.as_ptr();
            libc::execvp(self.program.as_ptr(), self.argv.as_ptr());
        }
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
    fn a_bare_name_is_looked_up_in_the_apps_path_from_its_working_directory() {
        // `bin` in PATH is relative: it means the app's working directory,
        // where the program is, not the agent's.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let app = dir.path().join("bin/app");
        std::fs::write(&app, "echo \"ran $0\"\n").unwrap();
        std::fs::set_permissions(&app, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let exec = Exec::new(Path::new("app"), [], [("PATH", "/nonexistent:bin")], false).unwrap();
        let mut cmd = std::process::Command::new(exec.program());
        cmd.current_dir(dir.path())
            .stdout(std::process::Stdio::piped());
        exec.install(&mut cmd);
        let out = cmd.spawn().unwrap().wait_with_output().unwrap();
        assert!(out.status.success());
        // No `#!`: run through /bin/sh, as execvp does.
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ran bin/app");
        let exec = Exec::new(Path::new("no-such-app"), [], [("PATH", "bin")], false).unwrap();
        let mut cmd = std::process::Command::new(exec.program());
        cmd.current_dir(dir.path());
        exec.install(&mut cmd);
        assert_eq!(
            cmd.spawn().unwrap_err().kind(),
            std::io::ErrorKind::NotFound
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
        let mut cmd = std::process::Command::new(exec.program());
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
        let mut cmd = std::process::Command::new(exec.program());
        exec.install(&mut cmd);
        let e = cmd.spawn().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
}
