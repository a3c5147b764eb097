//! The `vigil` binary: parse arguments, set up logging, run a command, map
//! errors to exit codes. Everything else lives in the library.

use std::{collections::HashMap, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use vigil::{
    audit::verify::{verify_dir, Anchor},
    authn::{load_or_create_dev_secret, mint_hs256, DevToken},
    authz::AccessRequest,
    audit::{checkpoint, export::ExportFilter, verify::KeyTrust, Redactor},
    cli::{AuditCommand, CheckArgs, Cli, Command, ExportArgs, LogFormat, TokenArgs, VerifyArgs},
    config::{parse_duration, Config},
    policy::PolicySet,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(Config::from_args(*args, cli.log_format)?).await,
            Command::Check(args) => check(args).await,
            Command::Token(args) => token(args),
            Command::Audit(AuditCommand::Verify(args)) => verify(args),
            Command::Audit(AuditCommand::Export(args)) => export(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    vigil::server::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let attributes: HashMap<String, String> = args.attributes.into_iter().collect();
    let request = AccessRequest {
        subject: &args.subject,
        extra_roles: &args.roles,
        object: &args.object,
        action: &args.action,
        domain: &args.domain,
        attributes: &attributes,
    };
    let verdict = policy.engine.decide(&request)?;
    let word = if verdict.allowed() { "allow" } else { "deny" };
    println!("{word}: {}", verdict.reason(&request));
    if args.explain {
        println!("policy version: {}", policy.version);
    }
    Ok(if verdict.allowed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = load_or_create_dev_secret(&args.secret_file)?;
    let ttl: Duration = parse_duration(&args.ttl).map_err(anyhow::Error::msg)?;
    let token = mint_hs256(
        &secret,
        &DevToken {
            subject: &args.subject,
            roles: &args.roles,
            roles_claim: &args.roles_claim,
            issuer: args.issuer.as_deref(),
            audience: args.audience.as_deref(),
            ttl,
        },
    )
    .context("cannot sign the token")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let anchors = args
        .anchors
        .iter()
        .chain(&args.receipts)
        .map(|a| a.parse::<Anchor>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let public_key = args.public_key.as_deref().map(checkpoint::load_public_key).transpose()?;
    match verify_dir(&args.audit_dir, &anchors, public_key.as_ref()) {
        Ok(report) => {
            println!(
                "ok: {} records (seq {}..={}) in {} file(s), {} bytes; head {}",
                report.records,
                report.first_seq,
                report.last_seq,
                report.files,
                report.bytes,
                hex::encode(report.head)
            );
            if let Some(through) = report.pruned_through {
                println!("pruned: seq 1..={through} removed by retention, covered by a signed checkpoint");
            }
            let trust = match report.key {
                KeyTrust::Supplied => "signatures checked with the supplied public key",
                KeyTrust::FoundInDirectory => {
                    "signatures checked with the key copy in the directory; pass --public-key to check against a trusted copy"
                }
                KeyTrust::None => "signatures NOT checked: no public key",
            };
            println!("checkpoints: {} ({trust})", report.checkpoints);
            for anchor in &anchors {
                println!("present: seq {} with hash {}", anchor.seq, hex::encode(anchor.hash));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let filter = ExportFilter::parse(
        args.since.as_deref(),
        args.until.as_deref(),
        args.subject,
        args.allowed.as_deref(),
        args.from_seq,
    )
    .map_err(anyhow::Error::msg)?;
    let redactor = match &args.hmac_key_file {
        Some(path) => Redactor::new(checkpoint::load_or_create_secret(path)?, [], true),
        None => Redactor::default(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    vigil::audit::export::export(&args.audit_dir, &filter, &redactor, args.format, &mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
