//! `vigil audit verify` and `vigil audit export`: the trail read offline.

use std::process::ExitCode;

use vigil::{
    audit::{
        checkpoint,
        export::ExportFilter,
        verify::{verify_dir, Anchor, KeyTrust},
        Redactor,
    },
    cli::{ExportArgs, FleetArgs, VerifyArgs},
    witness::{self, check},
};

/// Exit code of `vigil audit verify` when the chain verified but a receipt
/// or anchor names a record retention removed: it cannot be checked.
const UNVERIFIABLE: u8 = 3;

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.from {
        return verify_central(url, args.chain.as_deref()).await;
    }
    let receipts = args
        .receipts
        .iter()
        .map(|a| a.parse::<Anchor>().map(Anchor::receipt));
    let anchors = args
        .anchors
        .iter()
        .map(|a| a.parse::<Anchor>())
        .chain(receipts)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let public_key = args
        .public_key
        .as_deref()
        .map(checkpoint::load_public_key)
        .transpose()?;
    match verify_dir(&args.audit_dir, &anchors, public_key.as_ref()) {
        Ok(report) => {
            if let Some(url) = &args.witness {
                let chain = args
                    .chain
                    .clone()
                    .unwrap_or_else(|| witness::default_chain_id(&args.audit_dir));
                let store = match witness::Store::connect(url).await {
                    Ok(store) => store,
                    Err(e) => {
                        eprintln!("FAILED: cannot check against the witness: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
                match check::against_witness(&args.audit_dir, &store, &chain).await {
                    Ok(found) => println!(
                        "witness: chain {chain}: all {} record(s) it holds (seq {}..={}) are in the local log, {} compared byte for byte",
                        found.stored, found.first_seq, found.head_seq, found.compared
                    ),
                    Err(e) => {
                        eprintln!("FAILED: witness: chain {chain}: {e}");
                        return Ok(ExitCode::from(witness_exit(&e)));
                    }
                }
            }
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
            for (seq, reason) in &report.gaps {
                println!("gap: at seq {seq} the operator acknowledged lost history: {reason}");
            }
            for anchor in anchors.iter().filter(|a| !report.unverifiable.contains(a)) {
                println!("present: {anchor}");
            }
            if report.unverifiable.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for anchor in &report.unverifiable {
                eprintln!(
                    "cannot be checked: {anchor}: pruned (the log starts at seq {})",
                    report.first_seq
                );
            }
            Ok(ExitCode::from(UNVERIFIABLE))
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// 1 for what the witness shows was tampered with; 2 for what kept the
/// check from running.
fn witness_exit(error: &check::CheckError) -> u8 {
    match error {
        check::CheckError::Mismatch(_) => 1,
        check::CheckError::Witness(_) | check::CheckError::Local(_) => 2,
    }
}

/// `vigil audit verify --from postgres://… --chain ID`: the central copy.
async fn verify_central(url: &str, chain: Option<&str>) -> anyhow::Result<ExitCode> {
    let Some(chain) = chain else {
        eprintln!("--from needs --chain: the witness holds many chains (list them with `vigil audit fleet --from …`)");
        return Ok(ExitCode::from(2));
    };
    let store = match witness::Store::connect(url).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("FAILED: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match check::central(&store, chain).await {
        Ok(found) => {
            println!(
                "ok: chain {chain}: {} record(s) (seq {}..={}) chained without gaps; {} checkpoint(s) signed by the registered key",
                found.stored, found.first_seq, found.head_seq, found.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("FAILED: chain {chain}: {e}");
            Ok(ExitCode::from(witness_exit(&e)))
        }
    }
}

/// `vigil audit fleet --from postgres://…`.
pub async fn fleet(args: FleetArgs) -> anyhow::Result<ExitCode> {
    let store = match witness::Store::connect(&args.from).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("FAILED: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let (rows, troubled) = match check::fleet(&store).await {
        Ok(found) => found,
        Err(e) => {
            eprintln!("FAILED: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!("chain\thead seq\thead time\tlag records\treported s ago\tlast checkpoint seq\tforks\tgaps\tstatus");
    for row in &rows {
        let status = match (&row.stopped, row.gaps(), row.forks) {
            (Some(reason), _, _) => format!("STOPPED: {reason}"),
            (None, 0, 0) => "ok".to_owned(),
            (None, 0, forks) => format!("FORK: {forks} refused attempt(s) recorded"),
            (None, gaps, _) => format!("GAP: {gaps} record(s) missing"),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{status}",
            row.chain,
            row.head_seq,
            row.head_time.as_deref().unwrap_or("-"),
            row.local_head_seq.saturating_sub(row.head_seq),
            row.reported_ago_secs
                .map_or("-".to_owned(), |s| format!("{s:.0}")),
            row.last_checkpoint_seq
                .map_or("-".to_owned(), |s| s.to_string()),
            row.forks,
            row.gaps(),
        );
    }
    Ok(if troubled {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
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
