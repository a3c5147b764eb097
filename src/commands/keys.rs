//! `vigil keys generate|rotate|rewrap`: the field encryption keyring.

use std::process::ExitCode;

use anyhow::Context;
use vigil::{
    cli::KeysCommand,
    keys::{Keyring, SealedFor},
};

pub fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
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
            let bind = args.object.map(|object| SealedFor {
                domain: args.domain,
                object,
            });
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut rewrapped = 0u64;
            for (index, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line.context("cannot read stdin")?;
                let mut json: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("stdin line {}: not JSON", index + 1))?;
                rewrap_json(&keyring, bind.as_ref(), &mut json, &mut rewrapped)
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
    bind: Option<&SealedFor>,
    value: &mut serde_json::Value,
    count: &mut u64,
) -> Result<(), vigil::keys::CipherError> {
    match value {
        serde_json::Value::String(text)
            if Keyring::is_ciphertext(text) && keyring.needs_rewrap(text, bind.is_some()) =>
        {
            *text = keyring.rewrap(text, bind)?;
            *count += 1;
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rewrap_json(keyring, bind, item, count)?;
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                rewrap_json(keyring, bind, item, count)?;
            }
        }
        _ => {}
    }
    Ok(())
}
