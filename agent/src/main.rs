//! `cutover-agent`: a thin main over [`cutover_agent::cli`].

#![forbid(unsafe_code)]

use clap::Parser;
use cutover_agent::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    // The exec shim runs before anything else: no runtime, no logging.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("exec-shim") {
        return std::process::ExitCode::from(cutover_agent::shim::run(&args[2..]) as u8);
    }
    let cli = Cli::parse();
    cutover_common::logging::init("info");
    // One thread: an agent mostly waits. It wakes less (no hand-offs
    // between workers), keeps one malloc arena, and lets blocking work
    // (unpacking, hashing) go to the blocking pool.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
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
