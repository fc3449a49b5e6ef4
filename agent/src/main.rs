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
    // Two workers: state is written with fsync from async code, and a slow
    // disk must not hold up heartbeats (with one thread it did: the session
    // was declared dead during a drain on a busy machine).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
