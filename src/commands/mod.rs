//! One module per subcommand: each turns its arguments into calls on the
//! library and its outcome into output and an exit code. `anyhow` lives
//! here and in `main.rs` only.

mod audit;
mod check;
mod keys;
mod mask;
mod policy;
mod serve;
mod token;

use std::process::ExitCode;

use vigil::cli::{AuditCommand, Command, PolicyCommand};

pub use serve::serve;

/// Every command but `serve`, which picks its own runtime.
pub async fn run_tool(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_) => unreachable!("serve picks its own runtime"),
        Command::Check(args) => check::check(args).await,
        Command::Token(args) => token::token(args),
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(args).await,
        Command::Audit(AuditCommand::Export(args)) => audit::export(args),
        Command::Audit(AuditCommand::Fleet(args)) => audit::fleet(args).await,
        Command::Policy(PolicyCommand::Check(args)) => policy::check(args).await,
        Command::Policy(PolicyCommand::Test(args)) => policy::test(args).await,
        Command::Policy(PolicyCommand::Diff(args)) => policy::diff(args).await,
        Command::Mask(args) => mask::mask(args).await,
        Command::Keys(command) => keys::keys(command),
    }
}
