//! Listening sockets.

use std::net::SocketAddr;

/// A TCP listener on `addr` with `SO_REUSEADDR` (a restarted process binds
/// again at once) and an accept queue of `backlog` (the kernel caps it at
/// `net.core.somaxconn`). Needs a tokio runtime.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}
