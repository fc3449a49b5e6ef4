//! Lifecycle hooks: commands run in the release directory with a timeout,
//! their output captured into the command result.

use std::path::Path;
use std::time::Instant;

use cutover_common::service::Hook;
use serde::{Deserialize, Serialize};

/// What a hook did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutput {
    pub name: String,
    pub ok: bool,
    /// "exit 0", "exit 3", "timed out after 30s", "cannot start: ...".
    pub status: String,
    /// Combined stdout and stderr, at most 16 KiB (the tail).
    pub output: String,
    pub duration_ms: u64,
}

const MAX_OUTPUT: usize = 16 * 1024;

/// Runs hook `name` in `dir` with `env`, as `user` (uid, gid) when given:
/// hooks come from the release and run with the app's rights, not root's.
pub async fn run(
    name: &str,
    hook: &Hook,
    dir: &Path,
    env: &[(String, String)],
    user: Option<(u32, u32)>,
) -> HookOutput {
    let start = Instant::now();
    let program = if hook.command[0].contains('/') && !hook.command[0].starts_with('/') {
        dir.join(&hook.command[0]).display().to_string()
    } else {
        hook.command[0].clone()
    };
    let mut cmd = tokio::process::Command::new(&program);
    if let Some((uid, gid)) = user {
        cmd.gid(gid).uid(uid);
    }
    let child = cmd
        .args(&hook.command[1..])
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().cloned())
        .env("CUTOVER_HOOK", name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let elapsed = |s: Instant| s.elapsed().as_millis() as u64;
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return HookOutput {
                name: name.into(),
                ok: false,
                status: format!("cannot start {program}: {e}"),
                output: String::new(),
                duration_ms: elapsed(start),
            };
        }
    };
    let pid = child.id();
    match tokio::time::timeout(hook.timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).to_string();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if text.len() > MAX_OUTPUT {
                let cut = text.len() - MAX_OUTPUT;
                let cut = (cut..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                text = text[cut..].to_string();
            }
            HookOutput {
                name: name.into(),
                ok: out.status.success(),
                status: match out.status.code() {
                    Some(c) => format!("exit {c}"),
                    None => "killed by a signal".into(),
                },
                output: text,
                duration_ms: elapsed(start),
            }
        }
        Ok(Err(e)) => HookOutput {
            name: name.into(),
            ok: false,
            status: format!("wait failed: {e}"),
            output: String::new(),
            duration_ms: elapsed(start),
        },
        Err(_) => {
            if let Some(pid) = pid {
                let _ = crate::sys::signal_group(pid, rustix::process::Signal::KILL);
            }
            HookOutput {
                name: name.into(),
                ok: false,
                status: format!(
                    "timed out after {}",
                    humantime::format_duration(hook.timeout)
                ),
                output: String::new(),
                duration_ms: elapsed(start),
            }
        }
    }
}

/// The environment entry naming whose hook a process is (the service's
/// directory): hooks run in their own process groups and outlive an agent
/// that is killed, so a restarted agent finds them by it.
pub const OWNER_ENV: &str = "CUTOVER_HOOK_OF";

/// Kills what still runs of hooks owned by `owner` (started by an agent
/// that was killed): the journal runs their command again, and a hook (a
/// migration, say) must not run twice at once. Returns how many.
pub async fn kill_orphans(owner: &str) -> usize {
    let found = crate::instance::stop_by_env(
        &format!("{OWNER_ENV}={owner}"),
        rustix::process::Signal::KILL,
        std::time::Duration::ZERO,
    )
    .await;
    if !found.is_empty() {
        tracing::warn!(pids = ?found, owner, "killed hooks left running by an agent that was killed");
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn hooks_left_running_by_a_killed_agent_are_found_by_owner_and_killed() {
        let owner = format!("/test/{}/services/web", std::process::id());
        let spawn = |o: &str| {
            std::process::Command::new("sleep")
                .arg("30")
                .env(OWNER_ENV, o)
                .spawn()
                .unwrap()
        };
        let mut orphan = spawn(&owner);
        let mut other = spawn("/another/agent/services/web");
        assert_eq!(kill_orphans(&owner).await, 1);
        let st = orphan.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert_eq!(
            other.try_wait().unwrap(),
            None,
            "another owner's hook is left alone"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    fn hook(cmd: &[&str], timeout_ms: u64) -> Hook {
        Hook {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn output_and_exit_status_are_captured() {
        let out = run(
            "validate",
            &hook(&["sh", "-c", "echo hi; echo oops >&2; exit 3"], 5000),
            Path::new("/"),
            &[],
            None,
        )
        .await;
        assert!(!out.ok);
        assert_eq!(out.status, "exit 3");
        assert!(out.output.contains("hi") && out.output.contains("oops"));
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed() {
        let out = run(
            "pre_drain",
            &hook(&["sleep", "30"], 200),
            Path::new("/"),
            &[],
            None,
        )
        .await;
        assert!(!out.ok);
        assert!(out.status.contains("timed out"), "{}", out.status);
        assert!(out.duration_ms < 5000);
    }
}
