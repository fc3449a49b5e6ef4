//! An app's output straight to the systemd journal (`[run] output =
//! "journal"`): a stream connection to journald's stdout socket, as
//! `systemd-run` and `sd_journal_stream_fd(3)` make, given to the
//! instance as its stdout (priority info) and stderr (priority err), with
//! the service's name as the journal's identifier (`journalctl -t web`).
//! The instance holds the connections itself: its output goes on when the
//! agent restarts.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// journald's stream socket.
pub const JOURNAL_STDOUT: &str = "/run/systemd/journal/stdout";

/// A connection to journald that writes lines as `identifier` at
/// `priority` (syslog: 6 info, 3 err).
pub fn stream(socket: &Path, identifier: &str, priority: u8) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "connecting to the journal at {} (`[run] output = \"journal\"` needs journald): {e}",
                socket.display()
            ),
        )
    })?;
    // identifier, unit id, priority, level prefix, forward to syslog,
    // kmsg, console: the header journald reads first.
    let header = format!("{identifier}\n\n{priority}\n0\n0\n0\n0\n");
    s.write_all(header.as_bytes())?;
    s.shutdown(std::net::Shutdown::Read)?;
    Ok(s)
}
