//! The `flashnode` binary: CLI, configuration and the wiring of the crates' tasks.

// The CLI's doc comments are clap's help text, written for a terminal (`<peer id>`), not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cadence;
mod cli;
mod config;
mod dev;
mod fanout;
mod http;
mod node;
mod p2p;
mod presets;
mod relay;
mod status;

/// How long the runtime may wait for blocking threads at exit. The shutdown already spent
/// `--shutdown-timeout` on in-flight calls and tasks; an execution still running on a blocking
/// thread (a long `eth_call`) must not hold the process past it.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

fn main() -> anyhow::Result<()> {
    let cli = config::parse();
    cli::init_tracing(&cli.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flashnode")
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Devnet(args) => dev::run_devnet(args).await,
            cli::Command::Dev(args) => dev::run_dev(args).await,
            cli::Command::Node(args) => node::run_node(args).await,
            cli::Command::Status(args) => status::run(args).await,
            cli::Command::Relay(args) => relay::run_relay(args).await,
        }
    });
    // Dropping the runtime would wait for every blocking thread to finish.
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}
