//! `vigil mask`: JSONL records masked from stdin to stdout, for ETL jobs
//! and exports, with the same policy and treatments as the Mask RPC.

use std::{collections::HashMap, process::ExitCode};

use anyhow::Context;
use vigil::{
    cli::MaskArgs,
    keys::Keyring,
    mask as masking,
    policy::{
        reading::{reader, refusal, Reading},
        PolicySet,
    },
};

pub async fn mask(args: MaskArgs) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let keys = Keyring::load_or_create(&args.keyring)?;
    let attributes = HashMap::new();
    let asker = reader(
        &args.subject,
        &args.roles,
        &args.object,
        &args.domain,
        &attributes,
    );
    let mut masker = match policy.masker_for(&asker, &keys, args.max_depth)? {
        Reading::Admitted { masker, .. } => masker,
        Reading::Denied { reason } => {
            eprintln!("denied: {}", refusal(&asker, &reason));
            return Ok(ExitCode::from(1));
        }
    };
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
