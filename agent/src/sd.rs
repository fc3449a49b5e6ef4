//! The agent as a systemd service (`Type=notify`): `READY=1` once it has
//! recovered its services and tried its first session, `WATCHDOG=1` while
//! its main loops turn, `STOPPING=1` on the way out, `STATUS=` lines, and
//! the listening sockets it holds kept in systemd's file descriptor store
//! (`FDSTORE=1`, one `FDNAME` per service listener), so that an agent
//! restarted by systemd gets them back (`LISTEN_FDS`) even when no app
//! instance holds them. Without `NOTIFY_SOCKET` every call is a no-op.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::time::Duration;

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};

/// The file descriptor name of a service's listener in the store.
pub fn fd_name(service: &str, listener: &str) -> String {
    format!("{service}.{listener}")
}

/// A connection to the service manager, if the agent runs under one.
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<(OwnedFd, SocketAddrUnix)>,
    watchdog: Option<Duration>,
    /// What is in the store now, per service: (fd name, socket inode).
    stored: Mutex<HashMap<String, Vec<(String, u64)>>>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (+ `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let bytes = p.as_bytes();
            let addr = match bytes.first() {
                Some(b'@') => SocketAddrUnix::new_abstract_name(&bytes[1..]),
                Some(b'/') => SocketAddrUnix::new(bytes),
                _ => return None,
            }
            .ok()?;
            let sock = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::DGRAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .ok()?;
            Some((sock, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us)
            .map(Duration::from_micros);
        Notifier {
            target,
            watchdog,
            stored: Mutex::default(),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1` (half the manager's timeout).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.send(state, &[])
    }

    fn send(&self, state: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let Some((sock, addr)) = &self.target else {
            return Ok(());
        };
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        rustix::net::sendmsg_addr(
            sock,
            addr,
            &[IoSlice::new(state.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }

    /// Makes the store hold exactly `listeners` (name, socket) for
    /// `service`: new or replaced sockets are stored, gone ones removed.
    pub fn store_listeners(&self, service: &str, listeners: &[(String, BorrowedFd<'_>)]) {
        if !self.enabled() {
            return;
        }
        let now: Vec<(String, u64)> = listeners
            .iter()
            .map(|(n, fd)| (fd_name(service, n), inode(*fd)))
            .collect();
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let before = stored.get(service).cloned().unwrap_or_default();
        if before == now {
            return;
        }
        for (name, ino) in &before {
            if !now.iter().any(|(n, i)| n == name && i == ino) {
                let _ = self.notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"));
            }
        }
        for ((name, ino), (_, fd)) in now.iter().zip(listeners) {
            if before.iter().any(|(n, i)| n == name && i == ino) {
                continue;
            }
            match self.send(&format!("FDSTORE=1\nFDNAME={name}"), &[*fd]) {
                Ok(()) => tracing::debug!(fd_name = %name, "listener kept in the systemd fd store"),
                Err(e) => {
                    tracing::warn!(fd_name = %name, error = %e, "storing the listener with systemd failed")
                }
            }
        }
        stored.insert(service.to_string(), now);
    }
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
}

/// Sockets the service manager handed over at start (`LISTEN_FDS` for this
/// pid, named by `LISTEN_FDNAMES`): the fd store of a previous run. Taken
/// once; each is then claimed by name.
#[derive(Debug, Default)]
pub struct Inherited {
    fds: Mutex<HashMap<String, OwnedFd>>,
}

impl Inherited {
    /// Takes the descriptors passed to this process, if any.
    pub fn from_env() -> Inherited {
        let pid_ok = std::env::var("LISTEN_PID")
            .ok()
            .is_some_and(|p| p.trim() == std::process::id().to_string());
        let n: i32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if !pid_ok || n <= 0 {
            return Inherited::default();
        }
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .unwrap_or_default()
            .split(':')
            .map(str::to_string)
            .collect();
        let mut fds = HashMap::new();
        for (i, fd) in crate::sys::take_inherited_fds(n).into_iter().enumerate() {
            let name = names.get(i).cloned().unwrap_or_default();
            tracing::info!(fd = fd.as_raw_fd(), fd_name = %name, "socket handed back by systemd");
            fds.insert(name, fd);
        }
        Inherited {
            fds: Mutex::new(fds),
        }
    }

    /// The socket stored as `name`, once.
    pub fn take(&self, name: &str) -> Option<OwnedFd> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    /// Names not claimed by any service.
    pub fn unclaimed(&self) -> Vec<String> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// Convenience for borrowing.
pub fn borrow<'a>(name: &str, fd: &'a OwnedFd) -> (String, BorrowedFd<'a>) {
    (name.to_string(), fd.as_fd())
}
