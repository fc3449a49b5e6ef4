//! Linux process and socket primitives the agent needs beyond std and tokio:
//! pidfds (to hold on to a process without racing pid reuse, and to take a
//! listening socket back from a running app), process-group signals, and
//! listening-socket checks. Through rustix; the `unsafe` calls (tokio's
//! fd registration, owning the descriptors systemd passed at start, and
//! glibc's `mallopt` and `malloc_trim`) live here, the only module of the
//! agent allowed them.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, Signal};

/// A signal by its conventional name (`SIGTERM`, `TERM`).
pub fn signal_by_name(name: &str) -> Option<Signal> {
    let n = name.strip_prefix("SIG").unwrap_or(name);
    Some(match n {
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "WINCH" => Signal::WINCH,
        "KILL" => Signal::KILL,
        _ => return None,
    })
}

fn pid(raw: u32) -> io::Result<Pid> {
    Pid::from_raw(raw as i32).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(raw: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(pid(raw)?, PidfdFlags::empty())?)
}

/// Signals the process behind a pidfd (no pid-reuse race).
pub fn pidfd_signal(pidfd: impl AsFd, sig: Signal) -> io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

/// Duplicates file descriptor `fd` of the process behind `pidfd` into this
/// process (needs ptrace rights over it: root, or the same user).
pub fn pidfd_getfd(pidfd: impl AsFd, fd: i32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_getfd(
        pidfd,
        fd,
        PidfdGetfdFlags::empty(),
    )?)
}

/// Signals every process in process group `pgid`. A group that no longer
/// exists is not an error.
pub fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    match rustix::process::kill_process_group(pid(pgid)?, sig) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Signals process `p`. One that no longer exists is not an error.
pub fn signal_process(p: u32, sig: Signal) -> io::Result<()> {
    match rustix::process::kill_process(pid(p)?, sig) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether any process of group `pgid` is still alive.
pub fn group_alive(pgid: u32) -> bool {
    matches!(
        rustix::process::test_kill_process_group(Pid::from_raw(pgid as i32).expect("nonzero")),
        Ok(())
    )
}

/// Resolves when the process behind `pidfd` exits (a pidfd becomes
/// readable then).
pub async fn pidfd_exited(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: `pidfd` is owned by the AsyncFd for its whole registration and
    // is not used or closed elsewhere while registered.
    let afd = unsafe { tokio::io::unix::AsyncFd::register(pidfd) }.map_err(|e| e.into_parts().1)?;
    let _guard = afd.readable().await?;
    Ok(())
}

/// Start time of a process (field 22 of /proc/PID/stat, in clock ticks
/// since boot): with the pid, it identifies one process across pid reuse.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip
    // past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Pids of processes whose environment contains the entry `needle`
/// (`KEY=value`), e.g. an instance by its `CUTOVER_INSTANCE`.
pub fn pids_with_env(needle: &str) -> Vec<u32> {
    let want = needle.as_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|entry| entry == want))
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a socket is in the listening state.
pub fn is_listening(fd: impl AsFd) -> bool {
    rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false)
}

/// Puts a socket (back) into the listening state on `addr`. After an app
/// calls `shutdown()` on a shared listening socket, the kernel has released
/// its port: a bare `listen()` would pick a random one. Binding the very
/// same socket again first makes every process that shares it accept
/// again on the right address.
pub fn relisten(fd: impl AsFd, addr: std::net::SocketAddr, backlog: i32) -> io::Result<()> {
    // getsockname() still reports the old address: bind regardless; EINVAL
    // means the socket is still bound.
    match rustix::net::bind(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::net::listen(fd, backlog)?)
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Attaches a classic BPF program to the `SO_REUSEPORT` group of `fd`:
/// it picks, for each new connection, the index of the group's socket
/// that gets it (an index past the group's end falls back to the hash).
pub fn attach_reuseport_cbpf(fd: impl AsFd, program: &[SockFilter]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("program too long"))?,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, alive and unchanged for the call;
    // `SockFilter` is `#[repr(C)]` with the layout of `struct sock_filter`;
    // the kernel copies the program before returning.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the BPF program of `fd`'s `SO_REUSEPORT` group (back to the
/// kernel's hash); a group with none is left as it is.
pub fn detach_reuseport_bpf(fd: impl AsFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let zero: libc::c_int = 0;
    // SAFETY: a plain int option, alive for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_REUSEPORT_BPF,
            std::ptr::from_ref(&zero).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            e => Err(e),
        },
    }
}

/// Whether `SO_REUSEPORT` is set on a socket.
pub fn reuseport(fd: impl AsFd) -> bool {
    rustix::net::sockopt::socket_reuseport(fd).unwrap_or(false)
}

/// The local address of a socket.
pub fn local_addr(fd: impl AsFd) -> Option<std::net::SocketAddr> {
    let addr = rustix::net::getsockname(fd).ok()?;
    std::net::SocketAddr::try_from(addr).ok()
}

/// Takes ownership of descriptors 3 .. 3+n that the service manager passed
/// to this process (`LISTEN_FDS`), marking them close-on-exec so that no
/// app inherits them by accident. Descriptors that are not open are
/// skipped.
pub fn take_inherited_fds(n: i32) -> Vec<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut out = Vec::new();
    for raw in 3..3 + n.clamp(0, 1024) {
        // SAFETY: `LISTEN_FDS` for this pid says the manager passed these
        // descriptors; this runs once, at start, before the agent opens
        // anything, so nothing else owns them. `fcntl(F_GETFD)` on the
        // borrowed descriptor confirms it is open before we own it.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        if rustix::io::fcntl_getfd(borrowed).is_err() {
            continue;
        }
        let _ = rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC);
        // SAFETY: as above; each descriptor is owned exactly once.
        out.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    out
}

/// Runs blocking file work (an fsync) from async code without stalling the
/// runtime: on the multi-thread runtime the worker hands its other tasks
/// (heartbeats, probes) to another thread meanwhile. Elsewhere (unit tests
/// on a current-thread runtime, plain threads) it simply runs `f`.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes `bytes` to `path` atomically and durably (write, fsync, rename,
/// fsync of the directory) from async code, through [`blocking`]: how the
/// agent writes its journal, states and release markers.
///
/// Out of descriptors (`EMFILE`), it spends the agent's reserve and tries
/// again: a journal entry, a state or a marker is written even when
/// something has taken every other descriptor.
pub fn write_synced(path: &std::path::Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    blocking(|| with_reserve(|| cutover_common::fsutil::write_atomic(path, bytes, mode)))
}

/// Descriptors the agent holds back for its own durable writes (a write
/// takes two at once: the file and its directory).
const RESERVED_DESCRIPTORS: usize = 4;

static RESERVE: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// Sets the reserve aside (at start; again after each use).
pub fn reserve_descriptors() {
    let mut r = RESERVE.lock().unwrap_or_else(|p| p.into_inner());
    while r.len() < RESERVED_DESCRIPTORS {
        match std::fs::File::open("/dev/null") {
            Ok(f) => r.push(f),
            Err(_) => break,
        }
    }
}

/// Runs `f`; if it ran out of descriptors, frees the reserve, runs it
/// again, and sets the reserve aside again.
fn with_reserve<T>(f: impl Fn() -> io::Result<T>) -> io::Result<T> {
    match f() {
        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
            let mut r = RESERVE.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_empty() {
                return Err(e);
            }
            tracing::warn!("out of file descriptors: using the reserve to write");
            r.clear();
            let out = f();
            while r.len() < RESERVED_DESCRIPTORS {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => r.push(f),
                    Err(_) => break,
                }
            }
            out
        }
        other => other,
    }
}

/// How far below its apps the agent runs (nice values above theirs): on
/// a host whose cores are busy serving, the agent's own work (a swap's
/// journal and state writes, the fork of the new instance, probes) waits
/// for the apps instead of taking their turn. bench/swap-load.sh showed
/// the requests slowed by a swap are those in its first 10 ms, answered by
/// the old instance while the agent did that work (BENCHMARKS.md).
pub const AGENT_NICE_OFFSET: i32 = 5;

/// The nice values of apps and of the agent, once the agent has lowered
/// its own priority; unset (apps inherit the agent's) otherwise.
static NICE: std::sync::OnceLock<(i32, i32)> = std::sync::OnceLock::new();

/// What the agent did with its CPU priority at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicePlan {
    /// The agent runs at `agent`; apps are started at `apps`, its nice
    /// value when it started.
    Lowered { agent: i32, apps: i32 },
    /// Unchanged: a thread could not raise its priority back to `nice`
    /// (no `CAP_SYS_NICE` and too low an `RLIMIT_NICE`, or already at the
    /// lowest priority), and apps must not run below what the agent was
    /// started with.
    Kept { nice: i32 },
}

/// Lowers this thread's CPU priority by [`AGENT_NICE_OFFSET`] when apps
/// can still be forked at its priority now. Call first in main, before
/// any other thread exists: threads inherit the nice value of the thread
/// that creates them.
pub fn yield_cpu_to_apps() -> NicePlan {
    use rustix::process::{getpriority_process, setpriority_process};
    let Ok(start) = getpriority_process(None) else {
        return NicePlan::Kept { nice: 0 };
    };
    let agent = (start + AGENT_NICE_OFFSET).min(19);
    // Tried on a thread of its own rather than inferred from
    // `CAP_SYS_NICE` and `RLIMIT_NICE` (in a user namespace the capability
    // can be effective and still not allow it): down to the agent's value
    // and back up to the apps'.
    let can_go_back = agent > start
        && std::thread::spawn(move || {
            setpriority_process(None, agent).is_ok() && setpriority_process(None, start).is_ok()
        })
        .join()
        .unwrap_or(false);
    if !can_go_back || setpriority_process(None, agent).is_err() {
        return NicePlan::Kept { nice: start };
    }
    let _ = NICE.set((start, agent));
    NicePlan::Lowered { agent, apps: start }
}

/// Runs `f`, a fork of an app, at the apps' priority (see
/// [`yield_cpu_to_apps`]). A nice value belongs to a thread on Linux and
/// a forked child inherits its forking thread's: so this thread goes up
/// to the apps' value for the fork, which the child keeps through its
/// `setuid` and exec, and back down after.
pub fn at_app_priority<R>(f: impl FnOnce() -> R) -> R {
    match NICE.get() {
        Some(&(apps, agent)) => with_nice(apps, agent, f),
        None => f(),
    }
}

fn with_nice<R>(during: i32, after: i32, f: impl FnOnce() -> R) -> R {
    use rustix::process::setpriority_process;
    /// Puts the thread back at `after`, also if `f` panics.
    struct Back(i32);
    impl Drop for Back {
        fn drop(&mut self) {
            if let Err(e) = setpriority_process(None, self.0) {
                tracing::warn!(nice = self.0, error = %e, "cannot put the agent's thread back to its priority");
            }
        }
    }
    let _back = Back(after);
    if let Err(e) = setpriority_process(None, during) {
        tracing::warn!(nice = during, error = %e, "cannot fork an app at its priority: it starts at the agent's");
    }
    f()
}

/// One malloc arena for the whole process (glibc's `M_ARENA_MAX`). glibc
/// gives each thread that contends for the heap an arena of its own, and
/// memory freed in one arena is kept there: with the runtime's short-lived
/// blocking threads (fsyncs, unpacking) an agent ended up with three or
/// four arenas, each holding its own free pages. The agent has one worker
/// thread, so there is next to no contention to avoid.
pub fn single_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the heap's free pages back to the kernel (glibc's `malloc_trim`),
/// in every allocator arena. Called when the agent goes idle: without it
/// pages freed after a swap stay resident, and the agent's RSS crept up by
/// a few hundred KiB over a thousand swaps although its heap in use did
/// not grow (bench/agent-footprint.sh, BENCHMARKS.md). Takes microseconds on the
/// agent's heap of a few hundred KiB.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and shrinks glibc's own arenas under
    // their locks; it has no preconditions and takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {

    /// Runs this test's body in a child process of its own (the test
    /// binary again, for this test only): it takes every descriptor the
    /// process may have, which would disturb tests sharing a process.
    fn in_own_process(name: &str, body: impl FnOnce()) {
        if std::env::var_os("CUTOVER_TEST_CHILD").is_some() {
            body();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("CUTOVER_TEST_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }

    #[test]
    fn a_durable_write_succeeds_when_every_other_descriptor_is_taken() {
        in_own_process(
            "sys::tests::a_durable_write_succeeds_when_every_other_descriptor_is_taken",
            || {
                let dir = tempfile::tempdir().unwrap();
                let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
                let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
                rustix::process::setrlimit(
                    rustix::process::Resource::Nofile,
                    rustix::process::Rlimit {
                        current: Some(open + 64),
                        maximum: limit.maximum,
                    },
                )
                .unwrap();
                reserve_descriptors();
                // Something takes every descriptor left (idle connections,
                // in production).
                let mut hog = Vec::new();
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    hog.push(f);
                }
                assert!(std::fs::File::open("/dev/null").is_err());
                let path = dir.path().join("entry.json");
                write_synced(&path, b"{}", 0o600).expect("written from the reserve");
                drop(hog);
                assert_eq!(std::fs::read(&path).unwrap(), b"{}");
            },
        );
    }

    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_pidfd() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        assert!(pidfd_open(me).is_ok());
    }

    #[test]
    fn a_listener_taken_back_through_a_pidfd_is_the_same_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = pidfd_open(std::process::id()).unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&l);
        let copy = pidfd_getfd(&me, raw).unwrap();
        assert_eq!(local_addr(&copy), Some(l.local_addr().unwrap()));
        assert!(is_listening(&copy));
    }

    #[test]
    fn a_listener_shut_down_by_one_holder_is_repaired_for_all() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let other = l.try_clone().unwrap();
        rustix::net::shutdown(&other, rustix::net::Shutdown::Read).unwrap();
        assert!(!is_listening(&l));
        relisten(&l, addr, 16).unwrap();
        assert!(is_listening(&l));
        let _c = std::net::TcpStream::connect(addr).unwrap();
        other.set_nonblocking(false).unwrap();
        assert!(other.accept().is_ok(), "the other holder accepts again");
    }

    #[test]
    fn a_child_forked_at_another_priority_keeps_it_and_the_thread_goes_back() {
        use rustix::process::getpriority_process;
        // On a thread of its own, with values only ever raised, which any
        // process may do.
        std::thread::spawn(|| {
            let mine = getpriority_process(None).unwrap();
            let (apps, agent) = ((mine + 2).min(19), (mine + 4).min(19));
            let out =
                with_nice(apps, agent, || std::process::Command::new("nice").output()).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                apps.to_string()
            );
            assert_eq!(getpriority_process(None).unwrap(), agent);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn signal_names_parse_with_or_without_the_prefix() {
        assert_eq!(signal_by_name("SIGTERM"), Some(Signal::TERM));
        assert_eq!(signal_by_name("QUIT"), Some(Signal::QUIT));
        assert_eq!(signal_by_name("SIGNOPE"), None);
    }
}
