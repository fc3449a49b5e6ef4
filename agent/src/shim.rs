//! The exec shim (`cutover-agent exec-shim -- PROGRAM ARGS...`): the first
//! thing a new instance runs. `LISTEN_PID` must be the app's own pid, which
//! does not exist before fork; the shim sets it to its own pid and execs the
//! app, which keeps that pid. Everything else (clean environment, listening
//! sockets at fds 3.., process group, log files) was arranged by the agent.

use std::os::unix::process::CommandExt;

/// Runs the shim with the arguments after `exec-shim`; returns only on
/// failure (the exit code to use).
pub fn run(args: &[String]) -> i32 {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let Some((program, rest)) = args.split_first() else {
        eprintln!("cutover-agent exec-shim: no program given");
        return 2;
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    if std::env::var_os("LISTEN_FDS").is_some() {
        cmd.env("LISTEN_PID", std::process::id().to_string());
    }
    let err = cmd.exec();
    eprintln!("cutover-agent exec-shim: cannot execute {program}: {err}");
    127
}
