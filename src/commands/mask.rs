//! `vigil mask`: JSONL records masked from stdin to stdout, for ETL jobs
//! and exports, with the same policy and treatments as the Mask RPC.

use std::{collections::HashMap, process::ExitCode};

use anyhow::Context;
use vigil::{
    authz::AccessRequest,
    cli::MaskArgs,
    keys::Keyring,
    mask::{self as masking, Masker},
    policy::PolicySet,
};

pub async fn mask(args: MaskArgs) -> anyhow::Result<ExitCode> {
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
