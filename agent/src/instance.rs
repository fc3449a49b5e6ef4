//! One running process of a service ("instance"): started by the agent's
//! own forked child (see [`crate::exec`]) with the agent's listening sockets (systemd socket activation), a
//! clean environment, a private notify socket, its own process group and
//! its own log file; or re-attached after an agent restart by pid, start
//! time and pidfd. Never through the agent's own pipes, so the app outlives
//! the agent.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use cutover_common::service::ServiceSpec;
use rustix::process::Signal;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::exec::Exec;
use crate::notify::{NotifySocket, NotifyState};
use crate::sys;

/// Starting or signalling an instance failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("reading env file {path}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("user `{0}` does not exist on this host")]
    NoUser(String),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error("`{program}` is not in the app's PATH ({path})")]
    NotInPath { program: String, path: String },
    #[error("starting `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// "exited with status 3", "killed by signal 9", or "exited" when the
    /// status is unknown (a re-attached process).
    pub description: String,
}

/// The durable record of an instance, kept in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: String,
    pub release: String,
    pub pid: u32,
    pub start_time: u64,
    pub log: PathBuf,
    pub notify_socket: PathBuf,
}

/// A live instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub record: InstanceRecord,
    pidfd: Arc<OwnedFd>,
    pub exited: watch::Receiver<Option<Exit>>,
    pub notify: watch::Receiver<NotifyState>,
    _notify_socket: Arc<NotifySocket>,
}

/// What to start.
#[derive(Debug)]
pub struct Launch<'a> {
    pub id: String,
    pub release: String,
    pub release_dir: PathBuf,
    pub spec: &'a ServiceSpec,
    /// Listening sockets to pass (handover mode), in `spec.listen` order.
    pub listeners: Vec<(&'a str, &'a OwnedFd)>,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// journald's stream socket, for `[run] output = "journal"`.
    pub journal_socket: PathBuf,
    /// Woken when the instance exits.
    pub wake: crate::wake::Supervision,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, InstanceError> {
    let text = std::fs::read_to_string(path).map_err(|source| InstanceError::EnvFile {
        path: path.into(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim().trim_matches('"').to_string();
            Some((k.trim().to_string(), v))
        })
        .collect())
}

/// Resolves a user name (or numeric uid) to (uid, gid) from /etc/passwd.
pub fn lookup_user(name: &str) -> Result<(u32, u32), InstanceError> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok((uid, uid));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .ok_or_else(|| InstanceError::NoUser(name.into()))
}

/// The environment an instance starts with: nothing of the agent's own.
pub fn environment(
    l: &Launch<'_>,
    notify: &Path,
) -> Result<BTreeMap<String, String>, InstanceError> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    for f in &l.spec.run.env_files {
        env.extend(read_env_file(f)?);
    }
    env.extend(l.spec.run.env.clone());
    env.insert("NOTIFY_SOCKET".into(), notify.display().to_string());
    env.insert("CUTOVER_SERVICE".into(), l.spec.service.clone());
    env.insert("CUTOVER_RELEASE".into(), l.release.clone());
    env.insert("CUTOVER_INSTANCE".into(), l.id.clone());
    if !l.listeners.is_empty() {
        env.insert("LISTEN_FDS".into(), l.listeners.len().to_string());
        let names: Vec<&str> = l.listeners.iter().map(|(n, _)| *n).collect();
        env.insert("LISTEN_FDNAMES".into(), names.join(":"));
    }
    Ok(env)
}

/// Stops every process whose environment holds `needle` (`KEY=value`):
/// `sig`, up to `grace` for them to exit, then SIGKILL to any left.
/// Returns the pids found. For processes the agent has no handle on:
/// what an instance or a hook left behind when the agent was killed.
pub async fn stop_by_env(needle: &str, sig: Signal, grace: Duration) -> Vec<u32> {
    let found = sys::pids_with_env(needle);
    for &p in &found {
        let _ = sys::signal_process(p, sig);
    }
    if found.is_empty() || sig == Signal::KILL {
        return found;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && !sys::pids_with_env(needle).is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in sys::pids_with_env(needle) {
        let _ = sys::signal_process(p, Signal::KILL);
    }
    found
}

impl Instance {
    /// Starts an instance.
    pub fn spawn(l: Launch<'_>) -> Result<Instance, InstanceError> {
        let io = |what: String| move |source| InstanceError::Io { what, source };
        // The state directory lets apps through to their releases (0711);
        // what is below it is not everyone's: the notify sockets' directory
        // is passable, not listable, and the apps' output is root's alone
        // (the app writes through the descriptors it is given).
        for (dir, mode) in [(&l.run_dir, 0o711), (&l.log_dir, 0o700)] {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        let notify_path = l.run_dir.join(format!("{}.sock", l.id));
        let notify = NotifySocket::bind(&notify_path, NotifyState::default())
            .map_err(io(format!("binding {}", notify_path.display())))?;
        let user = l.spec.run.user.as_deref().map(lookup_user).transpose()?;
        if let Some((uid, gid)) = user {
            // The app must be able to send to its notify socket.
            std::os::unix::fs::chown(&notify_path, Some(uid), Some(gid))
                .map_err(io(format!("chown {}", notify_path.display())))?;
        }
        let env = environment(&l, &notify_path)?;
        // stdout and stderr: one file per instance, or the journal.
        let log_path = l.log_dir.join(format!("{}.log", l.id));
        let (out, err): (Stdio, Stdio) = match l.spec.run.output {
            cutover_common::service::Output::File => {
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&log_path)
                    .map_err(io(format!("opening {}", log_path.display())))?;
                let log2 = log
                    .try_clone()
                    .map_err(io("duplicating the log file".into()))?;
                (log.into(), log2.into())
            }
            cutover_common::service::Output::Journal => {
                let name = &l.spec.service;
                let stream = |priority| {
                    crate::journal_out::stream(&l.journal_socket, name, priority)
                        .map(|s| Stdio::from(std::os::fd::OwnedFd::from(s)))
                        .map_err(io(format!("the journal for {name}")))
                };
                (stream(6)?, stream(3)?)
            }
        };

        let run = &l.spec.run;
        let program = {
            let p = Path::new(&run.command[0]);
            if p.is_absolute() || !run.command[0].contains('/') {
                PathBuf::from(&run.command[0])
            } else {
                l.release_dir.join(p)
            }
        };
        let workdir = match &run.working_dir {
            Some(w) => l.release_dir.join(w),
            None => l.release_dir.clone(),
        };
        let exec = Exec::new(
            &program,
            run.command[1..].iter().map(String::as_str),
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            !l.listeners.is_empty(),
        )?;
        // The program, arguments and environment are `exec`'s (see there).
        let mut cmd = std::process::Command::new(exec.program());
        cmd.current_dir(&workdir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Some((uid, gid)) = user {
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        }
        let mut mappings = Vec::new();
        for (i, (_, fd)) in l.listeners.iter().enumerate() {
            let dup = fd
                .try_clone()
                .map_err(io("duplicating a listener".into()))?;
            mappings.push(FdMapping {
                parent_fd: dup,
                child_fd: 3 + i as i32,
            });
        }
        cmd.fd_mappings(mappings).map_err(|e| InstanceError::Io {
            what: "mapping listeners".into(),
            source: std::io::Error::other(e),
        })?;
        exec.install(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(false);
        // Forked at the apps' priority, not the agent's lower one.
        let mut child = crate::sys::at_app_priority(|| cmd.spawn()).map_err(|source| {
            let program = program.display().to_string();
            match env.get("PATH") {
                Some(path)
                    if source.kind() == std::io::ErrorKind::NotFound && !program.contains('/') =>
                {
                    InstanceError::NotInPath {
                        program,
                        path: path.clone(),
                    }
                }
                _ => InstanceError::Spawn { program, source },
            }
        })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        // Without its pidfd and start time the instance could be neither
        // supervised nor found again after a restart: it is not let loose
        // (it may already have taken connections from the shared queue).
        let tracked = sys::pidfd_open(pid)
            .map_err(io(format!("pidfd_open({pid})")))
            .and_then(|fd| {
                sys::process_start_time(pid)
                    .map(|t| (fd, t))
                    .ok_or_else(|| InstanceError::Io {
                        what: format!("reading the start time of pid {pid}"),
                        source: std::io::Error::other("no /proc entry"),
                    })
            });
        let (pidfd, start_time) = match tracked {
            Ok(t) => t,
            Err(e) => {
                let _ = sys::signal_group(pid, rustix::process::Signal::KILL);
                let _ = child.start_kill();
                // Reaped, not left a zombie.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                return Err(e);
            }
        };
        let (tx, rx) = watch::channel(None);
        let wake = l.wake.clone();
        tokio::spawn(async move {
            let desc = match child.wait().await {
                Ok(st) => match (
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(s)) => format!("killed by signal {s}"),
                    _ => "exited".into(),
                },
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = tx.send(Some(Exit { description: desc }));
            wake.wake();
        });
        Ok(Instance {
            record: InstanceRecord {
                id: l.id,
                release: l.release,
                pid,
                start_time,
                log: log_path,
                notify_socket: notify_path,
            },
            pidfd: Arc::new(pidfd),
            exited: rx,
            notify: notify.state.clone(),
            _notify_socket: Arc::new(notify),
        })
    }

    /// Re-attaches to an instance recorded before an agent restart, if that
    /// very process (same pid and start time) still runs.
    pub fn reattach(
        record: &InstanceRecord,
        ready: bool,
        wake: &crate::wake::Supervision,
    ) -> Option<Instance> {
        if sys::process_start_time(record.pid)? != record.start_time {
            return None;
        }
        let pidfd = sys::pidfd_open(record.pid).ok()?;
        // The pid could have been reused between the two reads: check again.
        if sys::process_start_time(record.pid)? != record.start_time {
            return None;
        }
        let notify = NotifySocket::bind(
            &record.notify_socket,
            NotifyState {
                ready,
                ..Default::default()
            },
        )
        .ok()?;
        let watch_fd = pidfd.try_clone().ok()?;
        let (tx, rx) = watch::channel(None);
        let wake = wake.clone();
        tokio::spawn(async move {
            let _ = sys::pidfd_exited(watch_fd).await;
            let _ = tx.send(Some(Exit {
                description: "exited".into(),
            }));
            wake.wake();
        });
        Some(Instance {
            record: record.clone(),
            pidfd: Arc::new(pidfd),
            exited: rx,
            notify: notify.state.clone(),
            _notify_socket: Arc::new(notify),
        })
    }

    pub fn pid(&self) -> u32 {
        self.record.pid
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&self, sig: Signal) -> std::io::Result<()> {
        sys::pidfd_signal(self.pidfd.as_fd(), sig)
    }

    /// A duplicate of file descriptor `fd` of this process.
    pub fn take_fd(&self, fd: i32) -> std::io::Result<OwnedFd> {
        sys::pidfd_getfd(self.pidfd.as_fd(), fd)
    }

    /// Waits for the exit, up to `timeout`. Returns whether it exited.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.exited.clone();
        tokio::time::timeout(timeout, rx.wait_for(|e| e.is_some()))
            .await
            .is_ok()
    }

    /// Stops the instance: `sig`, up to `grace` for it to exit, then SIGKILL
    /// to whatever is left of its process group. Returns how it ended.
    pub async fn stop(&self, sig: Signal, grace: Duration) -> String {
        if !self.has_exited() {
            let _ = self.signal(sig);
        }
        let graceful = self.wait_exit(grace).await;
        // Children the app left behind die with the group.
        let _ = sys::signal_group(self.record.pid, Signal::KILL);
        if !graceful {
            let _ = self.signal(Signal::KILL);
            self.wait_exit(Duration::from_secs(5)).await;
            "killed after grace".into()
        } else {
            self.exited
                .borrow()
                .as_ref()
                .map(|e| e.description.clone())
                .unwrap_or_else(|| "exited".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_read_as_key_value_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("env");
        std::fs::write(&p, "# secret\nDB_PASSWORD=\"hunter2\"\nexport A=1\n\n").unwrap();
        let v = read_env_file(&p).unwrap();
        assert_eq!(
            v,
            vec![
                ("DB_PASSWORD".into(), "hunter2".into()),
                ("A".into(), "1".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_program_missing_from_the_apps_path_is_named_with_that_path() {
        let dir = tempfile::tempdir().unwrap();
        let spec = cutover_common::service::parse_toml(
            "service = \"web\"\n[run]\ncommand = [\"no-such-app\", \"--port\", \"1\"]\n",
        )
        .unwrap();
        let e = Instance::spawn(Launch {
            id: "i1".into(),
            release: "r1".into(),
            release_dir: dir.path().into(),
            spec: &spec,
            listeners: Vec::new(),
            run_dir: dir.path().join("run"),
            log_dir: dir.path().join("logs"),
            journal_socket: crate::journal_out::JOURNAL_STDOUT.into(),
            wake: Default::default(),
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("`no-such-app` is not in the app's PATH ({DEFAULT_PATH})")
        );
    }

    #[test]
    fn root_is_found_in_passwd() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(matches!(
            lookup_user("no-such-user-here"),
            Err(InstanceError::NoUser(_))
        ));
    }

    /// `[run] output = "journal"`: stdout and stderr go to journald's
    /// stream socket (here one the test listens on), each connection
    /// opened with the service's name as identifier, info and err.
    #[tokio::test]
    async fn journal_output_goes_to_journald_streams_named_after_the_service() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("journal.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let spec = cutover_common::service::parse_toml(
            "service = \"web\"\n[run]\ncommand = [\"/bin/sh\", \"-c\", \"echo hello; echo oops >&2\"]\noutput = \"journal\"\n",
        )
        .unwrap();
        let launch = || Launch {
            id: "i1".into(),
            release: "r1".into(),
            release_dir: dir.path().into(),
            spec: &spec,
            listeners: Vec::new(),
            run_dir: dir.path().join("run"),
            log_dir: dir.path().join("logs"),
            journal_socket: socket.clone(),
            wake: Default::default(),
        };
        let _inst = Instance::spawn(launch()).unwrap();
        let mut streams = Vec::new();
        for _ in 0..2 {
            let (mut c, _) = listener.accept().unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            streams.push(text);
        }
        streams.sort();
        // identifier, unit, priority, level prefix, syslog, kmsg, console.
        assert_eq!(streams[0], "web\n\n3\n0\n0\n0\n0\noops\n");
        assert_eq!(streams[1], "web\n\n6\n0\n0\n0\n0\nhello\n");
        // No journal: the start fails, saying where it looked.
        drop(listener);
        let _ = std::fs::remove_file(&socket);
        let e = Instance::spawn(launch()).unwrap_err();
        let e = cutover_common::error_chain(&e);
        assert!(
            e.contains("journal.sock") && e.contains("needs journald"),
            "{e}"
        );
    }
}
