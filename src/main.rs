//! The `vigil` binary: parse arguments, set up logging, run a command, map
//! errors to exit codes. The commands live in `commands/`; everything else
//! lives in the library.

mod commands;

use std::process::ExitCode;

use clap::Parser;
use vigil::{
    cli::{Cli, Command},
    config::Config,
    logging::{self, LogFormat},
};

/// A panic's message can quote the data it tripped on (a slice index
/// panic prints the string), and requests carry sensitive values: the hook
/// names where it happened, never what it said. Handlers catch what they
/// can and answer with an audited error.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".to_owned());
        let thread = std::thread::current();
        eprintln!(
            "vigil: internal error (panic) in thread {} at {location}; its message is withheld because it may quote request data",
            thread.name().unwrap_or("unnamed")
        );
    }));
}

/// A request allocates dozens of small strings and buffers (h2 frames,
/// prost messages, the audit record); mimalloc serves them faster than
/// glibc's malloc and holds less at 100,000 policy lines (figures in
/// bench/README.md, "What we learned", item 9).
/// `.cargo/config.toml` makes it commit memory as used.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `vigil serve`: the runtime comes first, since the trace exporter
/// (tonic) is bound to it; then logging; then the server. Spans still
/// queued are flushed before the process exits.
fn serve(config: Config, format: LogFormat) -> anyhow::Result<ExitCode> {
    let runtime = match config.runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            logging::init(format, None);
            return Err(anyhow::Error::from(e).context("cannot start the async runtime"));
        }
    };
    let provider = match &config.tracing {
        Some(settings) => {
            let _in_runtime = runtime.enter();
            match vigil::telemetry::start(settings) {
                Ok(provider) => Some(provider),
                Err(e) => {
                    logging::init(format, None);
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    {
        use opentelemetry::trace::TracerProvider as _;
        logging::init(format, provider.as_ref().map(|p| p.tracer("vigil")));
    }
    let served = runtime.block_on(commands::serve(config));
    if let Some(provider) = provider {
        let _in_runtime = runtime.enter();
        if let Err(e) = provider.shutdown() {
            eprintln!("warning: traces may be lost: {e}");
        }
    }
    served
}

fn main() -> ExitCode {
    quiet_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            // The config file may choose the log format, so it is read
            // before logging starts; the flag wins over it.
            let config = Config::from_args(*args);
            let format = cli
                .log_format
                .or(config.as_ref().ok().and_then(|c| c.log_format))
                .unwrap_or(LogFormat::Text);
            match config {
                Ok(config) => serve(config, format),
                Err(e) => {
                    logging::init(format, None);
                    Err(e.into())
                }
            }
        }
        command => {
            logging::init(cli.log_format.unwrap_or(LogFormat::Text), None);
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
            eprintln!("error: {}", said_once(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: many errors already quote
/// their cause (`cannot read X: No such file`), which the chain would
/// repeat.
fn said_once(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
