//! A service's listening sockets: bound once by the agent, taken back
//! after its restart, checked after a swap, and the connections on them.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use cutover_common::service::ServiceSpec;

use crate::instance::Instance;
use crate::sys;

use super::*;

/// Binds a listening socket, with `SO_REUSEPORT` so that a new instance's
/// own socket can join it in one group during a swap (see
/// [`crate::steer`]).
pub(super) fn bind_listener(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_reuseport(true)?;
    sock.bind(addr)?;
    let l = sock.listen(4096)?.into_std()?;
    // Passed blocking, as systemd does.
    l.set_nonblocking(false)?;
    Ok(OwnedFd::from(l))
}

/// With `SO_REUSEPORT`, connections queued on a closing socket are reset
/// unless the kernel migrates them (`net.ipv4.tcp_migrate_req`, Linux 5.14):
/// turn it on where this agent may. Whether it is on.
pub fn enable_tcp_migrate_req() -> bool {
    const P: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    match std::fs::read_to_string(P).map(|v| v.trim() == "1") {
        Ok(true) => return true,
        // No such setting: a kernel older than 5.14.
        Err(_) => return false,
        Ok(false) => {}
    }
    match std::fs::write(P, "1") {
        Ok(()) => {
            tracing::info!("enabled net.ipv4.tcp_migrate_req for reuseport swaps");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot enable net.ipv4.tcp_migrate_req: reuseport swaps may reset queued connections");
            false
        }
    }
}

/// A new instance's own sockets, steered until it is ready (handover
/// mode, see [`crate::steer`]).
pub(super) struct Steered {
    pub sockets: Vec<Listener>,
    pub steering: Arc<crate::steer::Steering>,
}

/// Open established TCP connections on any of `ports` (from /proc/net).
pub fn established_connections(ports: &[u16]) -> usize {
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "01" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                n += 1;
            }
        }
    }
    n
}

impl Service {
    pub(super) fn recover_listeners(&mut self, spec: &ServiceSpec, alive: &[Instance]) {
        let matches = |fd: &OwnedFd, want: SocketAddr| {
            sys::local_addr(fd).is_some_and(|got| {
                got == want || (want.port() == got.port() && want.ip().is_unspecified())
            })
        };
        for (i, l) in spec.listen.iter().enumerate() {
            // The systemd fd store first: it holds the agent's own copy,
            // whatever became of the apps.
            if let Some(fd) = self
                .shared
                .inherited
                .take(&crate::sd::fd_name(&self.name, &l.name))
                .filter(|fd| matches(fd, l.address))
            {
                tracing::info!(service = %self.name, listener = %l.name, "took the listening socket back from the systemd fd store");
                self.listeners.push(Listener {
                    name: l.name.clone(),
                    addr: l.address,
                    fd,
                });
                continue;
            }
            let from_app = alive.iter().find_map(|inst| {
                let fd = inst.take_fd(3 + i as i32).ok()?;
                let got = sys::local_addr(&fd)?;
                (got == l.address
                    || (l.address.port() == got.port() && l.address.ip().is_unspecified()))
                .then_some(fd)
            });
            let fd = match from_app {
                Some(fd) => {
                    tracing::info!(service = %self.name, listener = %l.name, "took the listening socket back from a running instance");
                    fd
                }
                None => match bind_listener(l.address) {
                    Ok(fd) => fd,
                    Err(e) => {
                        tracing::error!(service = %self.name, address = %l.address, error = %e, "cannot bind listener");
                        continue;
                    }
                },
            };
            self.listeners.push(Listener {
                name: l.name.clone(),
                addr: l.address,
                fd,
            });
        }
    }

    pub(super) fn ensure_listeners(&mut self, spec: &ServiceSpec) -> Result<(), String> {
        for l in &spec.listen {
            if self
                .listeners
                .iter()
                .any(|x| x.name == l.name && x.addr == l.address)
            {
                continue;
            }
            let fd = bind_listener(l.address)
                .map_err(|e| format!("binding listener `{}` on {}: {e}", l.name, l.address))?;
            // A listener of the same name on another address stays until
            // the swap succeeds: the old instance serves on it meanwhile,
            // and if the swap fails it goes on doing so (see `abandon`).
            self.listeners.push(Listener {
                name: l.name.clone(),
                addr: l.address,
                fd,
            });
        }
        Ok(())
    }

    /// Re-`listen()`s a socket an app broke with `shutdown()`. The running
    /// instance saw its socket fail and may not recover by itself (an event
    /// loop that dropped the socket), so it is replaced, new first, on the
    /// next supervision pass.
    pub(super) fn check_listeners(&mut self) {
        for l in &self.listeners {
            if !sys::is_listening(&l.fd) {
                tracing::warn!(service = %self.name, listener = %l.name, "socket no longer listens; repairing");
                match sys::relisten(&l.fd, l.addr, 4096) {
                    Ok(()) => self.replace_soon = self.active.is_some(),
                    Err(e) => {
                        tracing::error!(service = %self.name, listener = %l.name, error = %e, "repairing the socket failed")
                    }
                }
            }
        }
    }

    /// Sockets of its own for the new instance of a handover swap, one per
    /// listener, each in a group with the serving instance's socket and
    /// steered so that clients reach the new instance only once it is
    /// ready. Says why not where that cannot be done (the swap then shares
    /// the serving socket, as before).
    pub(super) async fn steered_sockets(&self, spec: &ServiceSpec) -> Result<Steered, String> {
        if self.active.is_none() {
            return Err("no instance serves: nothing to hold clients back for".into());
        }
        let mut sockets = Vec::new();
        for l in &spec.listen {
            let held = self
                .listeners
                .iter()
                .find(|x| x.name == l.name && x.addr == l.address)
                .ok_or_else(|| format!("listener `{}` is new", l.name))?;
            // A socket bound by an older agent, without SO_REUSEPORT: set
            // now, it lets the new socket bind beside it, and the kernel
            // makes the group when that one listens (checked below).
            if !sys::reuseport(&held.fd) {
                rustix::net::sockopt::set_socket_reuseport(&held.fd, true)
                    .map_err(|e| format!("setting SO_REUSEPORT on listener `{}`: {e}", l.name))?;
            }
            let at = sys::local_addr(&held.fd)
                .ok_or_else(|| format!("listener `{}` has no address", l.name))?;
            // The held socket must be alone in its group (an old socket
            // some leftover process still holds would take index 0), and
            // the group's program must point at it before a socket joins.
            let n = crate::attribute::listening_on(at)?;
            if n != 1 {
                return Err(format!(
                    "{n} sockets listen on {at}, not the held one alone"
                ));
            }
            crate::steer::reset(&held.fd).map_err(|e| format!("steering: {e}"))?;
            let fd = bind_listener(at)
                .map_err(|e| format!("binding a new socket for `{}` on {at}: {e}", l.name))?;
            sockets.push(Listener {
                name: l.name.clone(),
                addr: l.address,
                fd,
            });
        }
        if !enable_tcp_migrate_req() {
            return Err("net.ipv4.tcp_migrate_req is off and cannot be turned on".into());
        }
        let fds: Vec<&OwnedFd> = sockets.iter().map(|l| &l.fd).collect();
        let steering = crate::steer::Steering::start(&fds)
            .await
            .map_err(|e| format!("steering: {e}"))?;
        Ok(Steered {
            sockets,
            steering: Arc::new(steering),
        })
    }

    /// Puts `sockets` in place of the held listeners of the same name and
    /// address; returns those they replace.
    pub(super) fn swap_listeners(&mut self, sockets: Vec<Listener>) -> Vec<Listener> {
        let mut replaced = Vec::new();
        for n in sockets {
            match self
                .listeners
                .iter_mut()
                .find(|l| l.name == n.name && l.addr == n.addr)
            {
                Some(l) => replaced.push(std::mem::replace(l, n)),
                None => self.listeners.push(n),
            }
        }
        replaced
    }

    pub(super) fn ports(&self) -> Vec<u16> {
        self.listeners.iter().map(|l| l.addr.port()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn established_connections_are_counted_by_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(established_connections(&[port]), 0);
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _s = l.accept().unwrap();
        assert_eq!(established_connections(&[port]), 1);
    }
}
