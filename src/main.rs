//! The `vigil` binary: parse arguments, set up logging, run a command, map
//! errors to exit codes. The commands live in `commands/`; everything else
//! lives in the library.

mod commands;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use vigil::{
    cli::{Cli, Command},
    config::Config,
    logging::{self, LogFormat},
};

/// A request allocates dozens of small strings and buffers (h2 frames,
/// prost messages, the audit record); mimalloc serves them faster than
/// glibc's malloc and holds less at 100,000 policy lines (figures in
/// bench/README.md, "What we learned", item 9).
/// `.cargo/config.toml` makes it commit memory as used.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            // The config file may choose the log format, so it is read
            // before logging starts; the flag wins over it.
            let config = Config::from_args(*args);
            let file_format = config.as_ref().ok().and_then(|c| c.log_format);
            logging::init(cli.log_format.or(file_format).unwrap_or(LogFormat::Text));
            match config {
                Ok(config) => config
                    .runtime()
                    .context("cannot start the async runtime")
                    .and_then(|runtime| runtime.block_on(commands::serve(config))),
                Err(e) => Err(e.into()),
            }
        }
        command => {
            logging::init(cli.log_format.unwrap_or(LogFormat::Text));
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(commands::run_tool(command)),
                Err(e) => Err(anyhow::Error::from(e).context("cannot start the async runtime")),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
