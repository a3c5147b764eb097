//! `vigil mask`: JSONL records masked from stdin to stdout, for ETL jobs
//! and exports, with the same policy and treatments as the Mask RPC.

use std::{
    collections::{BTreeMap, HashMap},
    process::ExitCode,
};

use anyhow::Context;
use vigil::{
    cli::MaskArgs,
    keys::{Keyring, KeyringLocation},
    limits::Reveals,
    policy::{
        reading::{reader, refusal, MaskLimits, Reading},
        PolicySet,
    },
};

pub async fn mask(args: MaskArgs) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let policy = PolicySet::load(&args.policies)
        .await
        .with_context(|| format!("policy in {}", args.policies.display()))?;
    let keys = Keyring::open(&KeyringLocation::from_flag(args.keyring))?;
    let attributes = HashMap::new();
    let asker = reader(
        &args.subject,
        &args.roles,
        &args.object,
        &args.domain,
        &attributes,
    );
    let limits = MaskLimits {
        max_depth: args.max_depth,
        max_values: args.max_values,
    };
    // An offline run of files reveals nothing to a caller: no quotas.
    let mut masker = match policy.masker_for(&asker, &keys, limits, Reveals::unlimited())? {
        Reading::Admitted { masker, .. } => masker,
        Reading::Denied { reason } => {
            eprintln!("denied: {}", refusal(&asker, &reason));
            return Ok(ExitCode::from(1));
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut actions = Vec::new();
    let mut skipped = 0u64;
    // Per label: values found, valid, invalid (with --report).
    let mut quality: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        // A record that cannot be masked is reported and left out (never
        // written in clear); the rest of the stream goes on.
        let masked = read_record(&line, args.max_depth).and_then(|mut record| {
            actions.clear();
            masker.refill_budget();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                masker.mask(index, &mut record, &mut actions)
            }));
            match outcome {
                Ok(Ok(())) => Ok(record),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("internal error while masking it".to_owned()),
            }
        });
        match masked {
            Ok(_) if args.report => {
                for action in &actions {
                    let counts = quality.entry(action.label.clone()).or_default();
                    counts[0] += 1;
                    match action.valid {
                        Some(true) => counts[1] += 1,
                        Some(false) => counts[2] += 1,
                        None => {}
                    }
                }
            }
            Ok(record) => {
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
            }
            Err(why) => {
                skipped += 1;
                eprintln!("stdin line {}: {why}; record left out", index + 1);
            }
        }
    }
    if args.report {
        writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10}",
            "label", "values", "valid", "invalid"
        )?;
        for (label, [found, valid, invalid]) in &quality {
            writeln!(out, "{label:<24} {found:>10} {valid:>10} {invalid:>10}")?;
        }
    }
    out.flush()?;
    if skipped > 0 {
        eprintln!("{skipped} record(s) left out");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// One JSONL line as a record, read as the HTTP API reads one: keys in
/// order, repeated keys kept, integers never rounded.
fn read_record(line: &str, max_depth: usize) -> Result<vigil::proto::json::Struct, String> {
    use serde::de::DeserializeSeed;
    let why = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => {
            let text = e.to_string();
            text.split(" at line ").next().unwrap_or(&text).to_owned()
        }
        _ => "not JSON".to_owned(),
    };
    let mut reader = serde_json::Deserializer::from_str(line);
    let record = vigil::proto::text::RecordSeed {
        max_depth: max_depth + 1,
    }
    .deserialize(&mut reader)
    .map_err(why)?;
    reader.end().map_err(why)?;
    Ok(record)
}
