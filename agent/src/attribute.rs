//! Which process answered a probe. During a swap the old and the new
//! instance share one listening socket (one accept queue), and in
//! reuseport mode the kernel spreads connections over both instances'
//! sockets: a probe aimed at the service's address may be answered by any
//! of them. A probe must judge the instance it names, so every network
//! probe connects, waits until its connection is accepted, and goes on
//! only if a process of the judged instance accepted it. A connection
//! taken by another process is closed before a byte is sent, and the
//! probe tries again on a fresh connection until its timeout.
//!
//! Who accepted is read from the kernel, with no help from the app: the
//! server side of the connection is looked up by its four-tuple over
//! `NETLINK_SOCK_DIAG` (its inode is 0 while it waits in the accept queue,
//! the inode of the accepting process's socket afterwards), then found
//! among the descriptors (`/proc/PID/fd`) of the instance's processes: its
//! main process, every process in its process group and every process it
//! started.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType, netlink};
use tokio::net::TcpStream;

/// Where the server side of a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Waiting in the accept queue (or not yet fully established).
    Queued,
    /// Accepted: the inode of the accepting socket.
    Accepted(u64),
    /// The kernel knows no such connection (closed, or never there).
    Gone,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const TCP_LISTEN: u8 = 10;
const REQ_LEN: usize = 72;
/// Offsets in a reply: nlmsghdr (16), then `inet_diag_msg`.
const MSG_STATE: usize = 17;
const MSG_DPORT: usize = 22;
const MSG_INODE: usize = 84;

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
    }
    b
}

/// A `SOCK_DIAG_BY_FAMILY` request for the one TCP socket whose local end
/// is `local` and remote end `remote` (an exact lookup, not a dump).
fn request(local: SocketAddr, remote: SocketAddr) -> [u8; REQ_LEN] {
    let mut r = [0u8; REQ_LEN];
    r[0..4].copy_from_slice(&(REQ_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // inet_diag_req_v2
    r[16] = match local.ip() {
        IpAddr::V4(_) => libc_af::INET,
        IpAddr::V6(_) => libc_af::INET6,
    };
    r[17] = 6; // IPPROTO_TCP
    r[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    // inet_diag_sockid: ports and addresses in network order.
    r[24..26].copy_from_slice(&local.port().to_be_bytes());
    r[26..28].copy_from_slice(&remote.port().to_be_bytes());
    r[28..44].copy_from_slice(&addr_bytes(local.ip()));
    r[44..60].copy_from_slice(&addr_bytes(remote.ip()));
    // interface 0; cookie INET_DIAG_NOCOOKIE (all ones): no cookie check.
    r[64..72].copy_from_slice(&[0xff; 8]);
    r
}

mod libc_af {
    pub const INET: u8 = 2;
    pub const INET6: u8 = 10;
}

/// Reads the kernel's reply to [`request`] for a socket whose remote port
/// is `remote_port` (pure).
fn parse_reply(b: &[u8], remote_port: u16) -> Result<Accept, String> {
    if b.len() < 16 {
        return Err(format!("short sock_diag reply ({} bytes)", b.len()));
    }
    let kind = u16::from_ne_bytes([b[4], b[5]]);
    if kind == NLMSG_ERROR {
        let errno = b
            .get(16..20)
            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
            .unwrap_or(0);
        return match -errno {
            0 | 2 => Ok(Accept::Gone), // ENOENT: no such connection
            e => Err(format!("sock_diag: {}", io::Error::from_raw_os_error(e))),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY || b.len() < MSG_INODE + 4 {
        return Err(format!(
            "unexpected sock_diag reply (type {kind}, {} bytes)",
            b.len()
        ));
    }
    let state = b[MSG_STATE];
    let dport = u16::from_be_bytes([b[MSG_DPORT], b[MSG_DPORT + 1]]);
    let inode = u32::from_ne_bytes([
        b[MSG_INODE],
        b[MSG_INODE + 1],
        b[MSG_INODE + 2],
        b[MSG_INODE + 3],
    ]);
    // Without an established child the lookup falls back to the
    // listener, which every instance holds: that says nothing yet.
    if state == TCP_LISTEN || dport != remote_port || inode == 0 {
        return Ok(Accept::Queued);
    }
    Ok(Accept::Accepted(u64::from(inode)))
}

/// A `NETLINK_SOCK_DIAG` socket that `req` was sent on, to read the
/// kernel's answer from.
fn diag_request(req: &[u8]) -> Result<std::os::fd::OwnedFd, String> {
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(|e| format!("sock_diag socket: {e}"))?;
    rustix::net::send(&fd, req, rustix::net::SendFlags::empty())
        .map_err(|e| format!("sock_diag request: {e}"))?;
    Ok(fd)
}

/// Where the server side of the connection from `client` to `server`
/// stands.
pub fn server_side(client: SocketAddr, server: SocketAddr) -> Result<Accept, String> {
    let fd = diag_request(&request(server, client))?;
    let mut buf = [0u8; 512];
    let (n, _) = rustix::net::recv(&fd, &mut buf, rustix::net::RecvFlags::empty())
        .map_err(|e| format!("sock_diag reply: {e}"))?;
    parse_reply(&buf[..n.min(buf.len())], client.port())
}

const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;

/// Listening TCP sockets bound to exactly `addr`: a sock_diag dump of
/// listeners only, which walks the kernel's listening table alone (reading
/// `/proc/net/tcp` walks every connection, seconds on a busy host).
pub fn listening_on(addr: SocketAddr) -> Result<usize, String> {
    let mut req = request(SocketAddr::new(addr.ip(), 0), SocketAddr::new(addr.ip(), 0));
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req[24..60].fill(0);
    let fd = diag_request(&req)?;
    let want = addr_bytes(addr.ip());
    let width = if addr.is_ipv4() { 4 } else { 16 };
    let mut count = 0;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (n, _) = rustix::net::recv(&fd, &mut buf, rustix::net::RecvFlags::empty())
            .map_err(|e| format!("sock_diag reply: {e}"))?;
        let (found, done) = count_listeners(&buf[..n.min(buf.len())], addr.port(), &want[..width])?;
        count += found;
        if done || n == 0 {
            return Ok(count);
        }
    }
}

/// Counts the listeners on `port` and `ip` in one datagram of a dump
/// reply; whether the dump is done (pure).
fn count_listeners(b: &[u8], port: u16, ip: &[u8]) -> Result<(usize, bool), String> {
    let (mut at, mut found) = (0, 0);
    while at + 16 <= b.len() {
        let len = u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let kind = u16::from_ne_bytes([b[at + 4], b[at + 5]]);
        if len < 16 || at + len > b.len() {
            break;
        }
        match kind {
            NLMSG_DONE => return Ok((found, true)),
            NLMSG_ERROR => return Err("sock_diag dump refused".into()),
            _ => {
                let m = &b[at..at + len];
                if m.len() >= 40 + ip.len()
                    && m[MSG_STATE] == TCP_LISTEN
                    && u16::from_be_bytes([m[20], m[21]]) == port
                    && &m[24..24 + ip.len()] == ip
                {
                    found += 1;
                }
            }
        }
        at += (len + 3) & !3;
    }
    Ok((found, false))
}

/// One line of `/proc/PID/stat`: (pid, parent, process group).
fn stat_of(pid: u32) -> Option<(u32, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses.
    let mut rest = stat[stat.rfind(')')? + 2..].split_whitespace();
    let ppid = rest.nth(1)?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((pid, ppid, pgrp))
}

/// The processes of the instance whose main process is `main` (pure):
/// `main`, its process group, and everything descended from either.
fn members(main: u32, procs: &[(u32, u32, u32)]) -> HashSet<u32> {
    let mut set: HashSet<u32> = procs
        .iter()
        .filter(|(pid, _, pgrp)| *pid == main || *pgrp == main)
        .map(|(pid, _, _)| *pid)
        .collect();
    set.insert(main);
    let children: HashMap<u32, Vec<u32>> =
        procs.iter().fold(HashMap::new(), |mut m, (pid, ppid, _)| {
            m.entry(*ppid).or_default().push(*pid);
            m
        });
    let mut todo: Vec<u32> = set.iter().copied().collect();
    while let Some(p) = todo.pop() {
        for c in children.get(&p).into_iter().flatten() {
            if set.insert(*c) {
                todo.push(*c);
            }
        }
    }
    set
}

/// The pids of the instance whose main process is `main`.
pub fn instance_pids(main: u32) -> HashSet<u32> {
    let procs: Vec<(u32, u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat_of)
        .collect();
    members(main, &procs)
}

/// Whether process `pid` holds the socket with `inode`. `Err` when its
/// descriptors cannot be read (it exited, or the agent may not look).
pub fn holds_socket(pid: u32, inode: u64) -> io::Result<bool> {
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(e) = e else { continue };
        if std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The instance a probe judges: its main process, and the processes of
/// it that accepted probe connections before (checked first, so that a
/// steady check reads one or two descriptor tables, not all of `/proc`).
#[derive(Debug)]
pub struct Judged {
    pub main: u32,
    accepting: std::sync::Mutex<Vec<u32>>,
    /// How connections reach this instance while clients are held back
    /// from it (see [`crate::steer`]); plain connects otherwise.
    route: Option<std::sync::Arc<crate::steer::Steering>>,
}

impl Judged {
    pub fn new(main: u32, route: Option<std::sync::Arc<crate::steer::Steering>>) -> Judged {
        Judged {
            main,
            accepting: Default::default(),
            route,
        }
    }

    /// Whether a process of the instance holds the socket `inode`.
    pub fn holds(&self, inode: u64) -> Result<bool, String> {
        let known: Vec<u32> = self.known();
        let mut unreadable = None;
        let mut check = |pid: u32| match holds_socket(pid, inode) {
            Ok(held) => held,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                unreadable = Some(format!("reading /proc/{pid}/fd: {e}"));
                false
            }
        };
        if known.iter().any(|p| check(*p)) {
            return Ok(true);
        }
        let found = instance_pids(self.main)
            .into_iter()
            .filter(|p| !known.contains(p))
            .find(|p| check(*p));
        if let Some(pid) = found {
            let mut k = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
            k.push(pid);
            // Workers come and go: keep the latest few.
            if k.len() > 8 {
                k.remove(0);
            }
            return Ok(true);
        }
        match unreadable {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    fn known(&self) -> Vec<u32> {
        let k = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        std::iter::once(self.main)
            .chain(k.iter().copied().filter(|p| *p != self.main))
            .collect()
    }
}

/// What became of the connections tried for one check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// Connections accepted by processes outside the instance.
    pub elsewhere: u32,
    /// Connections refused or never accepted.
    pub unanswered: u32,
}

/// Opens a connection to `addr` that a process of the `judged` instance
/// accepted, trying fresh connections until `deadline`. Connections
/// accepted by other processes (an older instance on the shared socket)
/// are closed unused.
pub async fn connect(
    addr: SocketAddr,
    judged: &Judged,
    deadline: tokio::time::Instant,
) -> Result<TcpStream, String> {
    let mut tries = Tries::default();
    let mut last_error = None;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(describe(addr, judged.main, tries, last_error));
        }
        let attempt = async {
            match &judged.route {
                Some(r) => r.connect(addr).await,
                None => TcpStream::connect(addr).await,
            }
        };
        let s = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tries.unanswered += 1;
                last_error = Some(format!("connect {addr}: {e}"));
                // Refused: the instance has not bound yet (reuseport) or
                // nothing listens. Not worth hammering.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) => continue,
        };
        let client = s.local_addr().map_err(|e| format!("local address: {e}"))?;
        let mut pause = Duration::from_micros(200);
        let accepted = loop {
            match server_side(client, addr)? {
                Accept::Accepted(inode) => break Some(inode),
                Accept::Queued => {}
                Accept::Gone => break None,
            }
            if tokio::time::Instant::now() + pause >= deadline {
                break None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        };
        match accepted {
            Some(inode) if judged.holds(inode)? => return Ok(s),
            Some(_) => tries.elsewhere += 1,
            None => tries.unanswered += 1,
        }
    }
}

/// Says why no connection reached the instance (pure).
fn describe(addr: SocketAddr, main: u32, t: Tries, last_error: Option<String>) -> String {
    let mut s = format!("instance pid {main} accepted no connection to {addr}");
    if t.elsewhere > 0 {
        s.push_str(&format!(
            " ({} taken by other processes on the shared socket)",
            t.elsewhere
        ));
    } else if let Some(e) = last_error {
        s.push_str(&format!(" (last: {e})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_its_process_group_and_all_it_started() {
        // (pid, ppid, pgrp): 10 is the main process; 11 a worker in its
        // group; 12 a worker that left the group (setsid) but descends
        // from 10; 13 its child; 20 another instance; 21 a child of it.
        let procs = [
            (1, 0, 1),
            (10, 1, 10),
            (11, 10, 10),
            (12, 10, 12),
            (13, 12, 12),
            (20, 1, 20),
            (21, 20, 20),
        ];
        let mut got: Vec<u32> = members(10, &procs).into_iter().collect();
        got.sort();
        assert_eq!(got, vec![10, 11, 12, 13]);
        assert_eq!(
            members(99, &procs).into_iter().collect::<Vec<_>>(),
            vec![99]
        );
    }

    #[test]
    fn a_reply_for_the_listener_or_an_unaccepted_connection_says_queued() {
        let mut b = vec![0u8; 100];
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[MSG_DPORT..MSG_DPORT + 2].copy_from_slice(&4000u16.to_be_bytes());
        b[MSG_STATE] = 1;
        assert_eq!(parse_reply(&b, 4000), Ok(Accept::Queued), "inode 0");
        b[MSG_INODE..MSG_INODE + 4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(parse_reply(&b, 4000), Ok(Accept::Accepted(77)));
        assert_eq!(parse_reply(&b, 4001), Ok(Accept::Queued), "another peer");
        b[MSG_STATE] = TCP_LISTEN;
        assert_eq!(parse_reply(&b, 4000), Ok(Accept::Queued), "the listener");
        let mut e = vec![0u8; 36];
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_reply(&e, 4000), Ok(Accept::Gone));
    }

    #[tokio::test]
    async fn a_connection_is_queued_until_accepted_then_names_the_accepting_socket() {
        for bind in ["127.0.0.1:0", "[::1]:0", "[::]:0"] {
            let l = std::net::TcpListener::bind(bind).unwrap();
            let mut server = l.local_addr().unwrap();
            if server.ip().is_unspecified() {
                server.set_ip("127.0.0.1".parse().unwrap());
            }
            let c = std::net::TcpStream::connect(server).unwrap();
            let client = c.local_addr().unwrap();
            assert_eq!(server_side(client, server), Ok(Accept::Queued), "{bind}");
            let (a, _) = l.accept().unwrap();
            let Ok(Accept::Accepted(inode)) = server_side(client, server) else {
                panic!("{bind}: not seen as accepted");
            };
            assert_eq!(holds_socket(std::process::id(), inode).ok(), Some(true));
            drop((a, c));
        }
    }

    #[tokio::test]
    async fn a_probe_connection_taken_by_another_process_is_not_the_instances() {
        // This process accepts; a `sleep` child is the "instance" judged.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepter = std::thread::spawn(move || {
            let mut kept = Vec::new();
            while let Ok((s, _)) = l.accept() {
                kept.push(s);
            }
        });
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let e = connect(addr, &Judged::new(other.id(), None), deadline)
            .await
            .unwrap_err();
        assert!(e.contains("taken by other processes"), "{e}");
        // Judged as this process, the first connection is attributed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        connect(addr, &Judged::new(std::process::id(), None), deadline)
            .await
            .unwrap();
        other.kill().unwrap();
        other.wait().unwrap();
        drop(accepter);
    }

    #[tokio::test]
    async fn nobody_accepting_fails_at_the_deadline_with_the_reason() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let e = connect(addr, &Judged::new(std::process::id(), None), deadline)
            .await
            .unwrap_err();
        assert!(e.contains("accepted no connection"), "{e}");
        drop(l);
    }

    #[test]
    fn the_instance_holding_a_socket_is_found_and_a_stranger_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        let Ok(Accept::Accepted(inode)) =
            server_side(c.local_addr().unwrap(), l.local_addr().unwrap())
        else {
            panic!("not accepted");
        };
        // This process holds the socket; a child of it does not.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(Judged::new(std::process::id(), None).holds(inode), Ok(true));
        assert_eq!(Judged::new(child.id(), None).holds(inode), Ok(false));
        child.kill().unwrap();
        child.wait().unwrap();
        drop((a, c));
    }

    #[test]
    fn listeners_are_counted_by_their_exact_address_and_port() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = a.local_addr().unwrap();
        assert_eq!(listening_on(at), Ok(1));
        let _c = std::net::TcpStream::connect(at).unwrap();
        assert_eq!(listening_on(at), Ok(1), "connections are not listeners");
        let other: SocketAddr = format!("127.0.0.2:{}", at.port()).parse().unwrap();
        assert_eq!(listening_on(other), Ok(0), "another address");
        let six = std::net::TcpListener::bind("[::1]:0").unwrap();
        assert_eq!(listening_on(six.local_addr().unwrap()), Ok(1));
    }
}
