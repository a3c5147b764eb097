//! Development tokens: `vigil token` mints HS256 tokens with a local secret
//! that `vigil serve --auth jwt` verifies when no key option is given, so
//! jwt mode can be tried in one step.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Map;

use super::key_files::{read_secret, KeyError};

/// Shared by `vigil token` and `vigil serve --auth jwt` without key options.
pub const DEV_SECRET_FILE: &str = "vigil-data/dev-jwt-secret";

/// Reads the development secret, creating it (32 random bytes, hex, mode
/// 0600) the first time.
pub fn load_or_create_dev_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    if !path.exists() {
        let io = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let secret = hex::encode(rand::random::<[u8; 32]>());
        crate::keyfile::write_private(path, secret.as_bytes()).map_err(io)?;
    }
    read_secret(path)
}

/// Claims of a development token minted by `vigil token`.
#[derive(Debug, Clone)]
pub struct DevToken<'a> {
    pub subject: &'a str,
    pub roles: &'a [String],
    pub roles_claim: &'a str,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub ttl: Duration,
}

pub fn mint_hs256(
    secret: &[u8],
    token: &DevToken<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), token.subject.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + token.ttl.as_secs()).into());
    claims.insert(token.roles_claim.into(), token.roles.to_vec().into());
    if let Some(issuer) = token.issuer {
        claims.insert("iss".into(), issuer.into());
    }
    if let Some(audience) = token.audience {
        claims.insert("aud".into(), audience.into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}
