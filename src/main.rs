//! The `vigil` binary: parse arguments, set up logging, run a command, map
//! errors to exit codes. Everything else lives in the library.

use std::{collections::HashMap, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use vigil::{
    audit::verify::{verify_dir, Anchor},
    audit::{checkpoint, export::ExportFilter, verify::KeyTrust, Redactor},
    authn::{load_or_create_dev_secret, mint_hs256, DevToken},
    authz::AccessRequest,
    cli::{
        AuditCommand, CheckArgs, Cli, Command, ExportArgs, KeysCommand, LogFormat, MaskArgs,
        PolicyCommand, PolicyDiffArgs, PolicyDirArgs, PolicyTestArgs, TokenArgs, VerifyArgs,
    },
    config::{parse_duration, Config},
    keys::Keyring,
    mask::{self as masking, Masker},
    policy::{cases, diff, lint, PolicySet},
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
    init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
    let result = match cli.command {
        Command::Serve(args) => match Config::from_args(*args, cli.log_format) {
            Ok(config) => config
                .runtime()
                .context("cannot start the async runtime")
                .and_then(|runtime| runtime.block_on(serve(config))),
            Err(e) => Err(e.into()),
        },
        command => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run_tool(command)),
            Err(e) => Err(anyhow::Error::from(e).context("cannot start the async runtime")),
        },
    };
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Every command but `serve`.
async fn run_tool(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_) => unreachable!("serve picks its own runtime"),
        Command::Check(args) => check(args).await,
        Command::Token(args) => token(args),
        Command::Audit(AuditCommand::Verify(args)) => verify(args),
        Command::Audit(AuditCommand::Export(args)) => export(args),
        Command::Policy(PolicyCommand::Check(args)) => policy_check(args).await,
        Command::Policy(PolicyCommand::Test(args)) => policy_test(args).await,
        Command::Policy(PolicyCommand::Diff(args)) => policy_diff(args).await,
        Command::Mask(args) => mask(args).await,
        Command::Keys(command) => keys(command),
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_signal().context("cannot install the SIGTERM/SIGINT handlers")?;
    vigil::server::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed before this
/// returns, so a signal that arrives while vigil starts up is not lost (and
/// does not kill the process before the audit log is closed).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
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
        let held = policy.engine.roles_of(&args.subject, &args.domain);
        let held: Vec<&str> = held
            .iter()
            .map(String::as_str)
            .chain(args.roles.iter().map(String::as_str))
            .collect();
        println!("subject: {}", args.subject);
        println!(
            "roles held: {}",
            if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            }
        );
        println!(
            "engine: {}",
            if policy.engine.is_compiled() {
                "compiled (indexed) evaluator"
            } else {
                "casbin-rs (matcher outside the compiled subset)"
            }
        );
        println!("policy version: {}", policy.version);
    }
    Ok(if verdict.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
    let public_key = args
        .public_key
        .as_deref()
        .map(checkpoint::load_public_key)
        .transpose()?;
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
                println!(
                    "present: seq {} with hash {}",
                    anchor.seq,
                    hex::encode(anchor.hash)
                );
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

async fn policy_check(args: PolicyDirArgs) -> anyhow::Result<ExitCode> {
    let report = lint::lint(&args.policies).await;
    for problem in &report.errors {
        println!("{}", with_severity(problem, "error"));
    }
    for problem in &report.warnings {
        println!("{}", with_severity(problem, "warning"));
    }
    println!(
        "{} error(s), {} warning(s) in {}",
        report.errors.len(),
        report.warnings.len(),
        args.policies.display()
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn with_severity(problem: &vigil::policy::files::Problem, severity: &str) -> String {
    let place = if problem.line == 0 {
        problem.file.clone()
    } else {
        format!("{}:{}", problem.file, problem.line)
    };
    if place.is_empty() {
        format!("{severity}: {}", problem.message)
    } else {
        format!("{place}: {severity}: {}", problem.message)
    }
}

async fn policy_test(args: PolicyTestArgs) -> anyhow::Result<ExitCode> {
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let path = args
        .cases
        .unwrap_or_else(|| args.policies.join(cases::DEFAULT_CASES_FILE));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read cases file {}", path.display()))?;
    let file = cases::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let outcomes = cases::run(&policy, &file);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for outcome in &outcomes {
        match &outcome.failure {
            None => println!("ok   {}", outcome.label),
            Some(why) => println!("FAIL {}: {why}", outcome.label),
        }
    }
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn policy_diff(args: PolicyDiffArgs) -> anyhow::Result<ExitCode> {
    let live = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let candidate = PolicySet::load(&args.candidate)
        .await
        .with_context(|| format!("policy in {}", args.candidate.display()))?;
    let read = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join(vigil::policy::files::POLICY_FILE)).unwrap_or_default()
    };
    let rules = diff::rule_diff(&read(&args.policies), &read(&args.candidate));
    println!("policy {} -> {}", live.version, candidate.version);
    for line in &rules.added {
        println!("+ {line}");
    }
    for line in &rules.removed {
        println!("- {line}");
    }
    println!(
        "{} rule(s) added, {} removed",
        rules.added.len(),
        rules.removed.len()
    );
    if let Some(audit_dir) = &args.from_audit {
        let replay = diff::replay(audit_dir, &live, &candidate)?;
        for change in &replay.changes {
            let word = |allowed: bool| if allowed { "allow" } else { "deny" };
            println!(
                "seq {}: {}: {} -> {} ({})",
                change.seq,
                change.request,
                word(change.live),
                word(change.candidate),
                change.candidate_reason
            );
        }
        let to_deny = replay.changes.iter().filter(|c| c.live).count();
        println!(
            "{} decision(s) replayed, {} would change ({} allow -> deny, {} deny -> allow), {} not replayable (HMAC'd values)",
            replay.replayed,
            replay.changes.len(),
            to_deny,
            replay.changes.len() - to_deny,
            replay.not_replayable
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn mask(args: MaskArgs) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let keys = Keyring::load_or_create(&args.keyring)?;
    let attributes = HashMap::new();
    let asker = AccessRequest {
        subject: &args.subject,
        extra_roles: &args.roles,
        object: &args.object,
        action: "read",
        domain: &args.domain,
        attributes: &attributes,
    };
    let verdict = policy.engine.decide(&asker)?;
    if !verdict.allowed() {
        eprintln!(
            "denied: {} may not read {}: {}",
            args.subject,
            args.object,
            verdict.reason(&asker)
        );
        return Ok(ExitCode::from(1));
    }
    let visibility = |label: &masking::Label| policy.grant(&asker, label);
    let mut masker = Masker::new(
        &policy.classification,
        &args.object,
        &keys,
        visibility,
        args.max_depth,
    );
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut actions = Vec::new();
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not JSON", index + 1))?;
        let Some(mut record) = masking::struct_from_json(&json) else {
            anyhow::bail!("stdin line {}: a record must be a JSON object", index + 1);
        };
        actions.clear();
        masker.mask(index, &mut record, &mut actions)?;
        serde_json::to_writer(&mut out, &masking::struct_to_json(&record))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    match command {
        KeysCommand::Generate(args) => {
            if args.keyring.exists() {
                anyhow::bail!(
                    "{} exists; use `vigil keys rotate` to add a key",
                    args.keyring.display()
                );
            }
            let keyring = Keyring::generate();
            keyring.save(&args.keyring)?;
            println!(
                "created {} with key {}",
                args.keyring.display(),
                keyring.active_key_id()
            );
        }
        KeysCommand::Rotate(args) => {
            let mut keyring = Keyring::load(&args.keyring)?;
            let id = keyring.rotate();
            keyring.save(&args.keyring)?;
            println!(
                "key {id} now encrypts; {} key(s) decrypt",
                keyring.key_ids().count()
            );
        }
        KeysCommand::Rewrap(args) => {
            let keyring = Keyring::load(&args.keyring)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut rewrapped = 0u64;
            for (index, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.context("cannot read stdin")?;
                let mut json: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("stdin line {}: not JSON", index + 1))?;
                rewrap_json(&keyring, &mut json, &mut rewrapped)
                    .map_err(|e| anyhow::anyhow!("stdin line {}: {e}", index + 1))?;
                serde_json::to_writer(&mut out, &json)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            eprintln!(
                "rewrapped {rewrapped} value(s) under key {}",
                keyring.active_key_id()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rewrap_json(
    keyring: &Keyring,
    value: &mut serde_json::Value,
    count: &mut u64,
) -> Result<(), vigil::keys::CipherError> {
    match value {
        serde_json::Value::String(text)
            if Keyring::is_ciphertext(text) && keyring.needs_rewrap(text) =>
        {
            *text = keyring.rewrap(text)?;
            *count += 1;
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rewrap_json(keyring, item, count)?;
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                rewrap_json(keyring, item, count)?;
            }
        }
        _ => {}
    }
    Ok(())
}
