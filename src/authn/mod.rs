//! Identity: turns a request's `authorization` metadata into a verified
//! [`Principal`] (jwt mode), or accepts the caller's word (trusted mode).
//! [`jwt`] verifies tokens, [`key_files`] reads the keys they are checked
//! with, [`dev`] mints development tokens for `vigil token`.
//!
//! Architecture invariant: tokens and secrets never appear in errors, logs or
//! audit records; errors say what is wrong with a token, not what it holds.

pub mod dev;
pub mod jwt;
pub mod key_files;

pub use dev::{load_or_create_dev_secret, mint_hs256, DevToken, DEV_SECRET_FILE};
pub use jwt::{JwtKeySource, JwtSettings, JwtVerifier};
pub use key_files::KeyError;

/// How callers are identified, as an operator chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The request's `subject` is used as given (local transports only).
    Trusted,
    /// The subject comes from a verified bearer token.
    Jwt,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Trusted => "trusted",
            AuthMode::Jwt => "jwt",
        }
    }
}

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

/// How callers are to be identified, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    Trusted {
        /// Set when trusted mode was explicitly allowed on a remote listener.
        forced_remote: bool,
    },
    Jwt(JwtSettings),
}

impl AuthSettings {
    pub fn mode(&self) -> AuthMode {
        match self {
            AuthSettings::Trusted { .. } => AuthMode::Trusted,
            AuthSettings::Jwt(_) => AuthMode::Jwt,
        }
    }
}

/// How callers are identified.
#[derive(Debug)]
pub enum Authenticator {
    /// The request's own `subject` is used.
    Trusted,
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// Reads the keys `settings` name; warns about the choices that weaken
    /// identity, so they are never made silently.
    pub fn from_settings(settings: &AuthSettings) -> Result<Authenticator, KeyError> {
        match settings {
            AuthSettings::Trusted { forced_remote } => {
                if *forced_remote {
                    tracing::warn!(
                        "--auth trusted on a listener reachable from other hosts (forced): any caller can claim any subject"
                    );
                }
                Ok(Authenticator::Trusted)
            }
            AuthSettings::Jwt(jwt) => {
                if matches!(jwt.keys, JwtKeySource::DevSecret(_)) {
                    tracing::warn!(
                        "--auth jwt without a key option: verifying with the local development secret"
                    );
                }
                Ok(Authenticator::Jwt(Box::new(JwtVerifier::from_settings(
                    jwt,
                )?)))
            }
        }
    }

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
