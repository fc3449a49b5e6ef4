//! Holding client traffic back from a new instance until it is ready
//! (handover mode). Sharing one accept queue with the old instance, a new
//! instance would take clients from its first `accept()`, ready or not.
//! Instead each listener gets a socket of its own for the new instance,
//! bound to the same address with `SO_REUSEPORT`, so that the old and the
//! new socket form one reuseport group, and a classic BPF program on the
//! group picks the socket of every new connection:
//!
//! - until the new instance is ready, clients go to the old socket (index
//!   0 of the group); only the agent's own probe connections, from a
//!   source port it registers for the time of the connect, go to the new
//!   one (index 1);
//! - once it is ready, everything goes to the new socket; when the old
//!   instance has stopped and its socket is closed, the connections still
//!   queued there move to the new one (`net.ipv4.tcp_migrate_req`), and
//!   the group is the new socket alone.
//!
//! Before the new instance starts, the agent checks that a steered
//! connection does arrive on the new socket (the group is as expected and
//! the kernel runs the program); otherwise the swap shares the old socket
//! as before, and says so.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::sys::{self, SockFilter};

/// Index of the old instance's socket in a listener's group.
const OLD: u32 = 0;
/// Index of the new instance's socket.
const NEW: u32 = 1;

/// `SKF_NET_OFF`: loads relative to the network header.
const NET: u32 = 0xfff0_0000;
const LDB: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const LDH: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const RSH: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const RET: u16 = 0x06; // BPF_RET | BPF_K

fn op(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The program: connections from `probe_port` to the new socket, all
/// others to `default` (pure). The TCP source port is read after an IPv4
/// header without options or a bare IPv6 header, as the agent's own
/// connections have.
pub fn program(probe_port: Option<u16>, default: u32) -> Vec<SockFilter> {
    let Some(port) = probe_port else {
        return vec![op(RET, 0, 0, default)];
    };
    vec![
        op(LDB, 0, 0, NET),             // 0: first byte of the IP header
        op(RSH, 0, 0, 4),               // 1: its version
        op(JEQ, 0, 2, 6),               // 2: IPv6? 3 : 5
        op(LDH, 0, 0, NET + 40),        // 3: TCP source port after IPv6
        op(JA, 0, 0, 1),                // 4: -> 6
        op(LDH, 0, 0, NET + 20),        // 5: TCP source port after IPv4
        op(JEQ, 0, 1, u32::from(port)), // 6: the probe's? 7 : 8
        op(RET, 0, 0, NEW),             // 7
        op(RET, 0, 0, default),         // 8
    ]
}

/// The steering of one swap: the new instance's sockets, one per
/// listener, in groups with the old ones.
#[derive(Debug)]
pub struct Steering {
    /// A copy of each new socket, to attach programs through; emptied
    /// when the swap ends.
    groups: Mutex<Vec<OwnedFd>>,
    /// Clients go to the new instance.
    to_new: AtomicBool,
    /// The swap ended: connections are not steered any more.
    done: AtomicBool,
    /// One steered connect at a time (the program names one port).
    connecting: tokio::sync::Mutex<()>,
}

impl Steering {
    /// Steers the groups of `new` (the new instance's sockets, bound to
    /// the old ones' addresses with `SO_REUSEPORT` and listening): clients
    /// to the old sockets. Checks first, on each, that a steered
    /// connection arrives on the new socket.
    pub async fn start(new: &[&OwnedFd]) -> io::Result<Steering> {
        let mut groups = Vec::new();
        for fd in new {
            let addr = sys::local_addr(fd).ok_or_else(|| io::Error::other("unbound socket"))?;
            check_group(fd, addr).await?;
            sys::attach_reuseport_cbpf(fd, &program(None, OLD))?;
            groups.push(fd.as_fd().try_clone_to_owned()?);
        }
        Ok(Steering {
            groups: Mutex::new(groups),
            to_new: AtomicBool::new(false),
            done: AtomicBool::new(false),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn apply(&self, probe_port: Option<u16>) -> io::Result<()> {
        let default = if self.to_new.load(Ordering::SeqCst) {
            NEW
        } else {
            OLD
        };
        let p = program(probe_port, default);
        for fd in self.groups.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            sys::attach_reuseport_cbpf(fd, &p)?;
        }
        Ok(())
    }

    /// The new instance is ready: every new connection goes to it.
    pub fn to_new(&self) -> io::Result<()> {
        self.to_new.store(true, Ordering::SeqCst);
        self.apply(None)
    }

    /// Gives up the swap: every new connection goes to the old instance.
    pub fn to_old(&self) -> io::Result<()> {
        self.to_new.store(false, Ordering::SeqCst);
        self.apply(None)
    }

    /// The swap ended: steer no more (probes of the instance connect
    /// plainly from now on), and let go of the sockets.
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A connection to `addr` that lands on the new instance's socket
    /// (plain once the swap ended).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        if self.done.load(Ordering::SeqCst) {
            return TcpStream::connect(addr).await;
        }
        // Cancel-safe: dropping the guard's future takes nothing.
        let _one = self.connecting.lock().await;
        let sock = socket_for(addr)?;
        let port = sock.local_addr()?.port();
        // Whatever happens from here (an error, this future dropped at a
        // probe's timeout), clients are steered as before afterwards.
        let _restore = Restore(self);
        self.apply(Some(port))?;
        sock.connect(addr).await
    }
}

/// Puts the program without a probe port back when dropped.
struct Restore<'a>(&'a Steering);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.apply(None) {
            tracing::error!(error = %e, "restoring the steering program failed");
        }
    }
}

/// Points every new connection of `fd`'s group at index 0: before a new
/// socket joins, so that a program left from the last swap (which pointed
/// at its new socket, index 1 then, index 0 once the old one closed) does
/// not send clients to the joining socket.
pub fn reset(fd: &OwnedFd) -> io::Result<()> {
    sys::attach_reuseport_cbpf(fd, &program(None, OLD))
}

/// An unconnected socket of `addr`'s family, bound to a port of its own.
fn socket_for(addr: SocketAddr) -> io::Result<TcpSocket> {
    let (sock, any) = match addr.ip() {
        IpAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    sock.bind(SocketAddr::new(any, 0))?;
    Ok(sock)
}

/// Checks that a connection steered to index 1 of `fd`'s group lands on
/// `fd` (nobody accepts from it yet): the group is (old, new) and the
/// kernel runs the program.
async fn check_group(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let sock = socket_for(target)?;
    let port = sock.local_addr()?.port();
    sys::attach_reuseport_cbpf(fd, &program(Some(port), OLD))?;
    let connected = tokio::time::timeout(Duration::from_secs(2), sock.connect(target)).await;
    // Taken off the new socket's queue if it is there, so that the new
    // instance's first accept is a real connection.
    let mut landed = false;
    if matches!(connected, Ok(Ok(_))) {
        for _ in 0..40 {
            if take_one(fd) {
                landed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    sys::attach_reuseport_cbpf(fd, &program(None, OLD))?;
    if landed {
        Ok(())
    } else {
        Err(io::Error::other(
            "a steered connection did not reach the new socket",
        ))
    }
}

/// Accepts (and closes) a connection waiting on `fd`, without blocking:
/// whether there was one. The socket is left blocking, as it is passed.
fn take_one(fd: &OwnedFd) -> bool {
    let _ = rustix::io::ioctl_fionbio(fd, true);
    let got = rustix::net::accept_with(fd, rustix::net::SocketFlags::CLOEXEC).is_ok();
    let _ = rustix::io::ioctl_fionbio(fd, false);
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reuseport_listener(addr: SocketAddr) -> OwnedFd {
        let s = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .unwrap();
        s.set_reuseport(true).unwrap();
        s.bind(addr).unwrap();
        let l = s.listen(64).unwrap().into_std().unwrap();
        OwnedFd::from(l)
    }

    /// Whether a connection was waiting on `fd` (now taken).
    fn queued(fd: &OwnedFd) -> bool {
        take_one(fd)
    }

    #[tokio::test]
    async fn clients_go_to_the_old_socket_and_probes_to_the_new_until_it_is_ready() {
        let old = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let addr = sys::local_addr(&old).unwrap();
        let new = reuseport_listener(addr);
        let s = Steering::start(&[&new]).await.unwrap();
        for _ in 0..20 {
            let _c = TcpStream::connect(addr).await.unwrap();
            assert!(
                !queued(&new) && queued(&old),
                "a client reached the new socket"
            );
        }
        for _ in 0..5 {
            let _p = s.connect(addr).await.unwrap();
            assert!(
                !queued(&old) && queued(&new),
                "a probe reached the old socket"
            );
        }
        s.to_new().unwrap();
        for _ in 0..20 {
            let _c = TcpStream::connect(addr).await.unwrap();
            assert!(
                !queued(&old) && queued(&new),
                "a client reached the old socket"
            );
        }
        s.finish();
        // The old socket closed: the new one alone takes everything,
        // whatever the program said.
        drop(old);
        let _c = TcpStream::connect(addr).await.unwrap();
        assert!(queued(&new));
    }

    #[tokio::test]
    async fn a_group_with_another_socket_in_the_way_is_refused() {
        // (old, stray, new): index 1 is not the new socket.
        let old = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let addr = sys::local_addr(&old).unwrap();
        let stray = reuseport_listener(addr);
        let new = reuseport_listener(addr);
        assert!(Steering::start(&[&new]).await.is_err());
        assert!(queued(&stray), "the check's connection went to index 1");
        drop((old, stray));
    }

    #[test]
    fn the_program_without_a_probe_returns_the_default_and_with_one_reads_the_source_port() {
        assert_eq!(program(None, 1), vec![op(RET, 0, 0, 1)]);
        let p = program(Some(4242), 0);
        assert_eq!(p.len(), 9);
        assert_eq!(p[6], op(JEQ, 0, 1, 4242));
        assert_eq!((p[7].k, p[8].k), (NEW, 0));
    }

    #[tokio::test]
    async fn connections_queued_on_the_old_socket_move_to_the_new_one_when_it_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Turning it on needs root; without it the agent does not steer.
        if !crate::service::enable_tcp_migrate_req() {
            eprintln!("skipped: net.ipv4.tcp_migrate_req is off and this user cannot turn it on");
            return;
        }
        let old = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let addr = sys::local_addr(&old).unwrap();
        let new = reuseport_listener(addr);
        let s = Steering::start(&[&new]).await.unwrap();
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        s.to_new().unwrap();
        s.finish();
        drop(old);
        let l = std::net::TcpListener::from(new);
        for c in &mut clients {
            let (mut a, _) = l.accept().unwrap();
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            std::io::Read::read_exact(&mut a, &mut b).unwrap();
            std::io::Write::write_all(&mut a, b"y").unwrap();
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"y");
        }
    }

    #[tokio::test]
    async fn a_socket_bound_without_reuseport_by_an_older_agent_can_still_be_steered() {
        // Bound and listening with no SO_REUSEPORT, as older agents did.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let old = OwnedFd::from(l);
        assert!(!sys::reuseport(&old));
        rustix::net::sockopt::set_socket_reuseport(&old, true).unwrap();
        let new = reuseport_listener(addr);
        let s = Steering::start(&[&new]).await.unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        assert!(
            !queued(&new) && queued(&old),
            "a client reached the new socket"
        );
        let _p = s.connect(addr).await.unwrap();
        assert!(
            !queued(&old) && queued(&new),
            "a probe reached the old socket"
        );
    }
}
