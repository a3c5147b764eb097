//! Identity: turns a request's `authorization` metadata into a verified
//! [`Principal`] (jwt mode), or accepts the caller's word (trusted mode).
//!
//! Architecture invariant: tokens and secrets never appear in errors, logs or
//! audit records; errors say what is wrong with a token, not what it holds.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::{JwtConfig, JwtKeySource};

/// Who is asking, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    /// Roles from the token's roles claim; they count for the subject in
    /// role-based decisions.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("missing bearer token: send metadata `authorization: Bearer <jwt>`")]
    MissingToken,
    #[error("authorization metadata must be `Bearer <jwt>`")]
    NotBearer,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token is unsigned (alg \"none\"), which is never accepted")]
    Unsigned,
    #[error("token algorithm {found} is not accepted here; expected {expected}")]
    WrongAlgorithm { found: String, expected: String },
    #[error("token signature does not verify with the configured key")]
    BadSignature,
    #[error("token has no key id (kid) matching the configured key set")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("token issuer does not match the required issuer")]
    WrongIssuer,
    #[error("token audience does not include the required audience")]
    WrongAudience,
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(String),
    #[error("request subject {request:?} differs from the token's subject {token:?}")]
    SubjectMismatch { request: String, token: String },
}

impl AuthnError {
    /// Short stable name for audit records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthnError::MissingToken => "missing_token",
            AuthnError::NotBearer => "not_bearer",
            AuthnError::Malformed(_) => "malformed",
            AuthnError::Unsigned => "alg_none",
            AuthnError::WrongAlgorithm { .. } => "wrong_algorithm",
            AuthnError::BadSignature => "bad_signature",
            AuthnError::UnknownKey => "unknown_key",
            AuthnError::Expired => "expired",
            AuthnError::NotYetValid => "not_yet_valid",
            AuthnError::WrongIssuer => "wrong_issuer",
            AuthnError::WrongAudience => "wrong_audience",
            AuthnError::MissingClaim(_) => "missing_claim",
            AuthnError::SubjectMismatch { .. } => "subject_mismatch",
        }
    }
}

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

/// How callers are identified.
#[derive(Debug)]
pub enum Authenticator {
    /// The request's own `subject` is used.
    Trusted,
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// Trusted mode: the request's own `subject` is the caller.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Authenticator::Trusted)
    }

    /// Resolves the principal of a request from its bearer token (if any)
    /// and the `subject` it names.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        request_subject: &str,
    ) -> Result<Principal, AuthnError> {
        match self {
            Authenticator::Trusted => Ok(Principal {
                subject: request_subject.to_owned(),
                roles: Vec::new(),
            }),
            Authenticator::Jwt(verifier) => {
                let header = authorization.ok_or(AuthnError::MissingToken)?;
                let token = bearer_token(header)?;
                let principal = verifier.verify(token)?;
                if !request_subject.is_empty() && request_subject != principal.subject {
                    return Err(AuthnError::SubjectMismatch {
                        request: request_subject.to_owned(),
                        token: principal.subject,
                    });
                }
                Ok(principal)
            }
        }
    }
}

fn bearer_token(header: &str) -> Result<&str, AuthnError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthnError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthnError::NotBearer);
    }
    Ok(token.trim())
}

#[derive(Debug)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs against configured keys and claims.
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    roles_claim: Vec<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of Debug output on purpose.
        f.debug_struct("JwtVerifier")
            .field(
                "algorithms",
                &self.keys.iter().map(|k| k.algorithm).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn from_config(config: &JwtConfig) -> Result<JwtVerifier, KeyError> {
        let keys = match &config.keys {
            JwtKeySource::Secret(path) => vec![secret_key(&read_secret(path)?)],
            JwtKeySource::DevSecret(path) => {
                let secret = load_or_create_dev_secret(path)?;
                vec![secret_key(&secret)]
            }
            JwtKeySource::PublicKeyPem(path) => vec![pem_key(path)?],
            JwtKeySource::Jwks(path) => jwks_keys(path)?,
        };
        Ok(JwtVerifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
            roles_claim: config.roles_claim.split('.').map(str::to_owned).collect(),
        })
    }

    fn expected_algorithms(&self) -> String {
        let mut names: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?}", k.algorithm))
            .collect();
        names.dedup();
        names.join(" or ")
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthnError> {
        let (algorithm, kid) = peek_header(token)?;
        let candidates: Vec<&VerifyingKey> = self
            .keys
            .iter()
            .filter(|k| k.algorithm == algorithm)
            .collect();
        if candidates.is_empty() {
            return Err(AuthnError::WrongAlgorithm {
                found: format!("{algorithm:?}"),
                expected: self.expected_algorithms(),
            });
        }
        let key = match &kid {
            Some(kid) if candidates.iter().any(|k| k.kid.is_some()) => candidates
                .into_iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(AuthnError::UnknownKey)?,
            _ if candidates.len() == 1 => candidates[0],
            _ => return Err(AuthnError::UnknownKey),
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => AuthnError::BadSignature,
                    ErrorKind::ExpiredSignature => AuthnError::Expired,
                    ErrorKind::ImmatureSignature => AuthnError::NotYetValid,
                    ErrorKind::InvalidIssuer => AuthnError::WrongIssuer,
                    ErrorKind::InvalidAudience => AuthnError::WrongAudience,
                    ErrorKind::MissingRequiredClaim(claim) => {
                        AuthnError::MissingClaim(claim.clone())
                    }
                    ErrorKind::InvalidAlgorithm => AuthnError::WrongAlgorithm {
                        found: format!("{algorithm:?}"),
                        expected: self.expected_algorithms(),
                    },
                    ErrorKind::InvalidClaimFormat(claim) => {
                        AuthnError::Malformed(format!("claim `{claim}` has the wrong type"))
                    }
                    ErrorKind::InvalidToken
                    | ErrorKind::Base64(_)
                    | ErrorKind::Json(_)
                    | ErrorKind::Utf8(_) => AuthnError::Malformed("not a well-formed JWT".into()),
                    _ => AuthnError::BadSignature,
                }
            })?;
        let claims = data.claims;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthnError::MissingClaim("sub".into())),
        };
        let roles = roles_from_claims(&claims, &self.roles_claim)?;
        Ok(Principal { subject, roles })
    }
}

/// Reads `alg` and `kid` before any verification, to refuse unsigned tokens
/// with a clear message and to pick the key.
fn peek_header(token: &str) -> Result<(Algorithm, Option<String>), AuthnError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthnError::Malformed(
            "a JWT has three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthnError::Malformed("header is not base64url".into()))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| AuthnError::Malformed("header is not a JSON object".into()))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(AuthnError::Malformed("header has no `alg`".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(AuthnError::Unsigned);
    }
    let algorithm = Algorithm::from_str(alg).map_err(|_| AuthnError::WrongAlgorithm {
        found: alg.chars().take(16).collect(),
        expected: "a supported algorithm".into(),
    })?;
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        _ => None,
    };
    Ok((algorithm, kid))
}

fn roles_from_claims(
    claims: &Map<String, Value>,
    path: &[String],
) -> Result<Vec<String>, AuthnError> {
    let mut value = None;
    let mut current = claims;
    for (i, segment) in path.iter().enumerate() {
        match current.get(segment) {
            Some(Value::Object(inner)) if i + 1 < path.len() => current = inner,
            Some(found) if i + 1 == path.len() => value = Some(found),
            _ => return Ok(Vec::new()),
        }
    }
    let claim = path.join(".");
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split([' ', ','])
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(AuthnError::Malformed(format!(
                    "claim `{claim}` must hold strings"
                ))),
            })
            .collect(),
        Some(_) => Err(AuthnError::Malformed(format!(
            "claim `{claim}` must be a list of role names"
        ))),
    }
}

fn read_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
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

fn secret_key(secret: &[u8]) -> VerifyingKey {
    VerifyingKey {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    }
}

fn pem_key(path: &Path) -> Result<VerifyingKey, KeyError> {
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

fn jwks_keys(path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier {
            keys: vec![secret_key(SECRET)],
            issuer: Some("vigil-test".into()),
            audience: None,
            leeway: Duration::from_secs(30),
            roles_claim: vec!["realm".into(), "roles".into()],
        }
    }

    fn token(subject: &str, ttl: u64) -> String {
        let roles = vec!["analyst".to_owned()];
        let dev = DevToken {
            subject,
            roles: &roles,
            roles_claim: "placeholder",
            issuer: Some("vigil-test"),
            audience: None,
            ttl: Duration::from_secs(ttl),
        };
        let mut token = mint_hs256(SECRET, &dev).unwrap();
        // Re-mint with a nested roles claim to exercise dotted paths.
        let claims = jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(&token)
            .unwrap()
            .claims;
        let mut claims = claims;
        claims.remove("placeholder");
        claims.insert("realm".into(), serde_json::json!({"roles": ["analyst"]}));
        token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        token
    }

    #[test]
    fn verifies_and_reads_nested_roles() {
        let principal = verifier().verify(&token("alice", 60)).unwrap();
        assert_eq!(
            principal,
            Principal {
                subject: "alice".into(),
                roles: vec!["analyst".into()]
            }
        );
    }

    #[test]
    fn refusals_are_specific() {
        let v = verifier();
        assert_eq!(
            v.verify("a.b"),
            Err(AuthnError::Malformed(
                "a JWT has three dot-separated parts".into()
            ))
        );
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(br#"{"alg":"none","typ":"JWT"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#)
        );
        assert_eq!(v.verify(&none), Err(AuthnError::Unsigned));
        let mut forged = token("alice", 60).into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(v.verify(&forged), Err(AuthnError::BadSignature));
        assert_eq!(
            v.verify(&token("alice", 0)).map(|_| ()),
            Ok(()),
            "within leeway"
        );
        let auth = Authenticator::Jwt(Box::new(v));
        let header = format!("Bearer {}", token("alice", 60));
        assert_eq!(
            auth.authenticate(Some(&header), "bob"),
            Err(AuthnError::SubjectMismatch {
                request: "bob".into(),
                token: "alice".into()
            })
        );
        assert_eq!(auth.authenticate(None, ""), Err(AuthnError::MissingToken));
        assert_eq!(
            auth.authenticate(Some("Basic abc"), ""),
            Err(AuthnError::NotBearer)
        );
    }
}
