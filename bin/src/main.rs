//! The `flashnode` binary: CLI, configuration and the wiring of the crates' tasks.

mod cli;
mod config;
mod dev;
mod fanout;
mod http;
mod node;
mod p2p;
mod presets;
mod status;

fn main() -> anyhow::Result<()> {
    let cli = config::parse();
    cli::init_tracing(&cli.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flashnode")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            cli::Command::Devnet(args) => dev::run_devnet(args).await,
            cli::Command::Dev(args) => dev::run_dev(args).await,
            cli::Command::Node(args) => node::run_node(args).await,
            cli::Command::Status(args) => status::run(args).await,
        }
    })
}
