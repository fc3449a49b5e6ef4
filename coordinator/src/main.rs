//! `cutover`: the coordinator daemon and operator CLI. A thin main over
//! [`cutover_coordinator::cli`].

#![forbid(unsafe_code)]

use cutover_coordinator::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    cutover_common::quiet_on_closed_pipe();
    let cli: Cli = cli::parse();
    let daemon = matches!(cli.command, Command::Serve(_));
    cutover_common::logging::init(if daemon { "info" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_multi_thread()
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
        Err(e) if e.downcast_ref::<cli::DeployOutcome>().is_some() => {
            let o = e.downcast_ref::<cli::DeployOutcome>().expect("checked");
            eprintln!("{}", o.message);
            std::process::ExitCode::from(o.code)
        }
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
