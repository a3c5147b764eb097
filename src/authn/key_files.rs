//! The keys tokens are verified with, read from files: an HS256 secret, a
//! PEM public key, or a JSON Web Key Set.

use std::path::{Path, PathBuf};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug)]
pub(super) struct VerifyingKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
}

pub(super) fn read_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let trimmed = bytes.trim_ascii_end().to_vec();
    if trimmed.len() < 32 {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            message: format!(
                "an HS256 secret needs at least 32 bytes, this one has {}",
                trimmed.len()
            ),
        });
    }
    Ok(trimmed)
}

pub(super) fn secret_key(secret: &[u8]) -> VerifyingKey {
    VerifyingKey {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    }
}

pub(super) fn pem_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(VerifyingKey {
            kid: None,
            algorithm: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok(VerifyingKey {
            kid: None,
            algorithm: Algorithm::ES256,
            key,
        });
    }
    Err(KeyError::Invalid {
        path: path.to_owned(),
        message: "not an RSA or P-256 EC public key in PEM".into(),
    })
}

pub(super) fn jwks_keys(path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not a JSON Web Key Set: {e}")))?;
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                return Err(invalid(format!(
                    "key {index}: only RSA (RS256) and P-256 (ES256) keys are supported"
                )))
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("key {index}: {e}")))?;
        keys.push(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(invalid("the key set is empty".into()));
    }
    Ok(keys)
}
