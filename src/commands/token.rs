//! `vigil token`: a development JWT signed with the local HS256 secret.

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use vigil::{
    authn::{load_or_create_dev_secret, mint_hs256, DevToken},
    cli::TokenArgs,
    config::parse_duration,
};

pub fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
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
