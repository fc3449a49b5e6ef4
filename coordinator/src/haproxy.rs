//! `cutover haproxy-switch`: the blue/green switch command for HAProxy,
//! run by the coordinator as a spec's `strategy.switch`. It drives
//! HAProxy's runtime API (its admin socket) on one backend whose servers
//! are named after the hosts: the live group's servers are set `ready`,
//! and once HAProxy has each of them up, every other server of the
//! backend is set `drain` (no new requests; requests in flight finish;
//! health checks go on, so switching back is instant). Nothing is
//! drained unless the live group is up: a failed switch leaves traffic
//! where it was. docs/load-balancers.md.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a switch did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("cannot talk to HAProxy on {socket}: {source}")]
    Socket {
        socket: String,
        source: std::io::Error,
    },
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error("HAProxy has no backend `{0}` (or it has no server)")]
    NoBackend(String),
    #[error(
        "backend `{backend}` has no server named {missing:?} (servers are named after the hosts: {have:?}); nothing was changed"
    )]
    Missing {
        backend: String,
        missing: Vec<String>,
        have: Vec<String>,
    },
    #[error("no live hosts: CUTOVER_HOSTS is empty")]
    NoHosts,
    #[error(
        "{not_up:?} not up at HAProxy within {}; the old servers were left serving",
        humantime::format_duration(*.waited)
    )]
    NotUp {
        not_up: Vec<String>,
        waited: Duration,
    },
}

/// One server of a backend, from `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `srv_op_state`: 2 running (up), 0 stopped (down).
    pub op_state: u8,
}

/// Reads the servers of `backend` from `show servers state <backend>`.
pub fn parse_servers(text: &str, backend: &str) -> Vec<Server> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 7 || f[1] != backend {
                return None;
            }
            Some(Server {
                name: f[3].to_string(),
                op_state: f[5].parse().ok()?,
            })
        })
        .collect()
}

/// What to tell HAProxy: the live servers to set ready, then the others
/// to drain.
pub fn plan(
    servers: &[Server],
    backend: &str,
    live: &[String],
) -> Result<(Vec<String>, Vec<String>), SwitchError> {
    if live.is_empty() {
        return Err(SwitchError::NoHosts);
    }
    if servers.is_empty() {
        return Err(SwitchError::NoBackend(backend.into()));
    }
    let names: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<String> = live
        .iter()
        .filter(|h| !names.contains(h.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(SwitchError::Missing {
            backend: backend.into(),
            missing,
            have: names.iter().map(|s| s.to_string()).collect(),
        });
    }
    let others = servers
        .iter()
        .filter(|s| !live.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    Ok((live.to_vec(), others))
}

/// Sends one command to the admin socket; HAProxy answers nothing (or
/// a blank line) when it took it.
pub fn command(socket: &Path, cmd: &str) -> Result<String, SwitchError> {
    let io = |source| SwitchError::Socket {
        socket: socket.display().to_string(),
        source,
    };
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.write_all(format!("{cmd}\n").as_bytes()).map_err(io)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io)?;
    Ok(out)
}

fn set(socket: &Path, backend: &str, server: &str, state: &str) -> Result<(), SwitchError> {
    let cmd = format!("set server {backend}/{server} state {state}");
    let answer = command(socket, &cmd)?;
    if !answer.trim().is_empty() {
        return Err(SwitchError::Refused {
            command: cmd,
            answer: answer.trim().to_string(),
        });
    }
    Ok(())
}

/// Moves `backend`'s traffic to the servers named `live`; waits up to
/// `wait_up` for HAProxy to have them up before draining the others.
/// Returns what it did.
pub fn switch(
    socket: &Path,
    backend: &str,
    live: &[String],
    wait_up: Duration,
) -> Result<String, SwitchError> {
    let state = |socket: &Path| -> Result<Vec<Server>, SwitchError> {
        Ok(parse_servers(
            &command(socket, &format!("show servers state {backend}"))?,
            backend,
        ))
    };
    let (ready, drain) = plan(&state(socket)?, backend, live)?;
    for s in &ready {
        set(socket, backend, s, "ready")?;
    }
    let since = Instant::now();
    loop {
        let now = state(socket)?;
        let not_up: Vec<String> = ready
            .iter()
            .filter(|h| !now.iter().any(|s| &s.name == *h && s.op_state == 2))
            .cloned()
            .collect();
        if not_up.is_empty() {
            break;
        }
        if since.elapsed() >= wait_up {
            return Err(SwitchError::NotUp {
                not_up,
                waited: wait_up,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &drain {
        set(socket, backend, s, "drain")?;
    }
    Ok(format!(
        "haproxy backend {backend}: ready and up: {}; drained: {}",
        ready.join(", "),
        if drain.is_empty() {
            "none".to_string()
        } else {
            drain.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 be 1 web-1 198.18.0.2 2 0 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 9100 - - 0\n3 be 2 web-2 198.18.0.3 0 8 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 9100 - - 0\n3 be 3 web-3 198.18.0.4 2 0 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 9100 - - 0\n";

    #[test]
    fn servers_are_read_from_show_servers_state() {
        let s = parse_servers(STATE, "be");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            Server {
                name: "web-2".into(),
                op_state: 0
            }
        );
        assert!(parse_servers(STATE, "other").is_empty());
    }

    #[test]
    fn the_live_group_is_readied_and_every_other_server_drained() {
        let s = parse_servers(STATE, "be");
        let (ready, drain) = plan(&s, "be", &["web-2".into(), "web-3".into()]).unwrap();
        assert_eq!(ready, ["web-2", "web-3"]);
        assert_eq!(drain, ["web-1"]);
    }

    #[test]
    fn a_host_with_no_server_of_its_name_changes_nothing_and_is_named() {
        let s = parse_servers(STATE, "be");
        let e = plan(&s, "be", &["web-4".into()]).unwrap_err().to_string();
        assert!(e.contains("no server named [\"web-4\"]"), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
        assert!(matches!(
            plan(&[], "be", &["web-1".into()]),
            Err(SwitchError::NoBackend(_))
        ));
        assert!(matches!(plan(&s, "be", &[]), Err(SwitchError::NoHosts)));
    }
}
