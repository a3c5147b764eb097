//! JWT verification: signature with the configured keys, `exp`/`nbf` with
//! leeway, issuer and audience when required, then the subject and the
//! roles claim (a dotted path for nested claims).

use std::{path::PathBuf, str::FromStr, time::Duration};

use arc_swap::ArcSwap;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::{
    dev::load_or_create_dev_secret,
    key_files::{jwks_keys, pem_key, read_secret, secret_key, KeyError, VerifyingKey},
    AuthnError, Principal,
};

/// How tokens are checked: the keys and the claims required of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub keys: JwtKeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub roles_claim: String,
    pub leeway: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// HS256 shared secret.
    Secret(PathBuf),
    /// RS256 or ES256 public key in PEM.
    PublicKeyPem(PathBuf),
    /// JSON Web Key Set; keys picked by `kid`.
    Jwks(PathBuf),
    /// The local development secret (`vigil token` signs with it).
    DevSecret(PathBuf),
}

/// Verifies JWTs against configured keys and claims.
pub struct JwtVerifier {
    /// Swapped whole when a JWKS file changes (identity providers rotate
    /// their keys); a request reads one set.
    keys: ArcSwap<Vec<VerifyingKey>>,
    /// The JWKS file the keys come from, if they do.
    jwks_file: Option<PathBuf>,
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
                &self
                    .keys
                    .load()
                    .iter()
                    .map(|k| k.algorithm)
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn from_settings(config: &JwtSettings) -> Result<JwtVerifier, KeyError> {
        let keys = match &config.keys {
            JwtKeySource::Secret(path) => vec![secret_key(&read_secret(path)?)],
            JwtKeySource::DevSecret(path) => {
                let secret = load_or_create_dev_secret(path)?;
                vec![secret_key(&secret)]
            }
            JwtKeySource::PublicKeyPem(path) => vec![pem_key(path)?],
            JwtKeySource::Jwks(path) => jwks_keys(path)?,
        };
        let jwks_file = match &config.keys {
            JwtKeySource::Jwks(path) => Some(path.clone()),
            _ => None,
        };
        Ok(JwtVerifier {
            keys: ArcSwap::from_pointee(keys),
            jwks_file,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
            roles_claim: config.roles_claim.split('.').map(str::to_owned).collect(),
        })
    }

    /// The JWKS file to watch, when the keys come from one.
    pub fn jwks_file(&self) -> Option<&std::path::Path> {
        self.jwks_file.as_deref()
    }

    /// Reads the JWKS file again; a file that does not parse leaves the
    /// keys in force. Returns how many keys now verify.
    pub fn reload_jwks(&self) -> Result<usize, KeyError> {
        let Some(path) = &self.jwks_file else {
            return Ok(self.keys.load().len());
        };
        let keys = jwks_keys(path)?;
        let count = keys.len();
        self.keys.store(std::sync::Arc::new(keys));
        Ok(count)
    }

    fn expected_algorithms(&self) -> String {
        let mut names: Vec<String> = self
            .keys
            .load()
            .iter()
            .map(|k| format!("{:?}", k.algorithm))
            .collect();
        names.dedup();
        names.join(" or ")
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthnError> {
        let (algorithm, kid) = peek_header(token)?;
        let keys = self.keys.load();
        let candidates: Vec<&VerifyingKey> =
            keys.iter().filter(|k| k.algorithm == algorithm).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::{
        dev::{mint_hs256, DevToken},
        Authenticator, Credentials,
    };
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier {
            keys: ArcSwap::from_pointee(vec![secret_key(SECRET)]),
            jwks_file: None,
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
        let bearer = |authorization| Credentials {
            authorization,
            ..Credentials::default()
        };
        assert_eq!(
            auth.authenticate(bearer(Some(&header)), "bob"),
            Err(AuthnError::SubjectMismatch {
                request: "bob".into(),
                token: "alice".into(),
                credential: "token",
            })
        );
        assert_eq!(
            auth.authenticate(bearer(None), ""),
            Err(AuthnError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(bearer(Some("Basic abc")), ""),
            Err(AuthnError::NotBearer)
        );
    }
}
