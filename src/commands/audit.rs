//! `vigil audit verify` and `vigil audit export`: the trail read offline.

use std::process::ExitCode;

use vigil::{
    audit::{
        checkpoint,
        export::ExportFilter,
        verify::{verify_dir, Anchor, KeyTrust},
        Redactor,
    },
    cli::{ExportArgs, VerifyArgs},
};

/// Exit code of `vigil audit verify` when the chain verified but a receipt
/// or anchor names a record retention removed: it cannot be checked.
const UNVERIFIABLE: u8 = 3;

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
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
