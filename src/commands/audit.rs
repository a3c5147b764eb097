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

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
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
