//! `cutover-agent`: a thin main over [`cutover_agent::cli`].

#![forbid(unsafe_code)]

use cutover_agent::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    cutover_agent::sys::single_heap_arena();
    cutover_common::quiet_on_closed_pipe();
    let cli: Cli = cutover_common::parse_args();
    cutover_common::logging::init("info");
    if matches!(cli.command, cli::Command::Run(_)) {
        // Before the runtime's threads exist: they inherit it.
        match cutover_agent::sys::yield_cpu_to_apps() {
            cutover_agent::sys::NicePlan::Lowered { agent, apps } => {
                tracing::info!(agent, apps, "the agent runs below its apps (nice values)")
            }
            cutover_agent::sys::NicePlan::Kept { nice } => tracing::info!(
                nice,
                "the agent keeps its priority: it could not start apps at a higher one (CAP_SYS_NICE or RLIMIT_NICE)"
            ),
        }
    }
    // One worker: an idle agent wakes as rarely as it can. State is written
    // with fsync from async code, always through `sys::blocking`, which
    // hands the worker's other tasks (heartbeats) to another thread while
    // the disk is slow. (A current-thread runtime cannot do that: with it a
    // drain on a busy machine once stalled heartbeats long enough for the
    // coordinator to drop the session.)
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Spawned, not run by `block_on` on this thread: then everything runs
    // on the one worker, and a timer never has to wake a second thread.
    let run = rt.block_on(async {
        tokio::spawn(cli::run(cli))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the agent task failed: {e}")))
    });
    match run {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain = cutover_common::join_chain(e.chain().map(|c| c.to_string()));
            eprintln!("error: {chain}");
            if let Some(hint) = cutover_common::tls::explain(&chain) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
