//! Identity: turns a request's `authorization` metadata into a verified
//! [`Principal`] (jwt mode), takes it from the verified TLS client
//! certificate (mtls mode), or accepts the caller's word (trusted mode).
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

use crate::tls::{CertificateNames, SubjectName};

/// How callers are identified, as an operator chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The request's `subject` is used as given (local transports only).
    Trusted,
    /// The subject comes from a verified bearer token.
    Jwt,
    /// The subject is a name of the verified TLS client certificate (a
    /// SPIFFE ID by default).
    Mtls,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Trusted => "trusted",
            AuthMode::Jwt => "jwt",
            AuthMode::Mtls => "mtls",
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
    #[error("request subject {request:?} differs from the {credential}'s subject {token:?}")]
    SubjectMismatch {
        request: String,
        token: String,
        /// What named the subject: "token" or "certificate".
        credential: &'static str,
    },
    #[error(
        "no client certificate: --auth mtls identifies callers by the TLS client certificate, \
         and this connection has none (a Unix socket, or a TCP listener without --tls-client-ca)"
    )]
    NoClientCertificate,
    #[error("the client certificate has no {0} name, which --mtls-subject takes the subject from")]
    CertificateLacksName(&'static str),
    /// A gateway that may name the end subject named none (or an empty
    /// one): the request is refused as unauthenticated, never decided for
    /// subject "".
    #[error(
        "no subject: the gateway must name the end subject in the `{header}` header \
         ([http] subject_header) or report the client's mTLS principal; an empty one is none"
    )]
    NoGatewaySubject { header: String },
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
            AuthnError::NoClientCertificate => "no_client_certificate",
            AuthnError::CertificateLacksName(_) => "certificate_lacks_name",
            AuthnError::NoGatewaySubject { .. } => "no_subject",
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
    Mtls(MtlsSettings),
}

/// `--auth mtls`: which certificate name is the subject, and which callers
/// are gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsSettings {
    pub subject_name: SubjectName,
    /// Subjects (as `subject_name` reads them) of gateways (Envoy, nginx)
    /// whose ext_authz checks and `/v1/check` subrequests name the end
    /// subject themselves. Any other caller is its own subject there too.
    pub gateways: Vec<String>,
}

impl AuthSettings {
    pub fn mode(&self) -> AuthMode {
        match self {
            AuthSettings::Trusted { .. } => AuthMode::Trusted,
            AuthSettings::Jwt(_) => AuthMode::Jwt,
            AuthSettings::Mtls(_) => AuthMode::Mtls,
        }
    }
}

/// What a call proves about its caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `authorization` metadata or header.
    pub authorization: Option<&'a str>,
    /// The verified TLS client certificate of the connection.
    pub client_certificate: Option<&'a CertificateNames>,
    /// Set by a gateway front-end (ext_authz, `/v1/check`) when the request
    /// it describes names the end subject (`gateway_names_subject`); it
    /// decides only in mtls mode. Never set from anything a caller sends.
    pub vouched_by_gateway: bool,
}

/// How callers are identified.
#[derive(Debug)]
pub enum Authenticator {
    /// The request's own `subject` is used.
    Trusted,
    Jwt(Box<JwtVerifier>),
    Mtls(MtlsSettings),
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
            AuthSettings::Mtls(mtls) => Ok(Authenticator::Mtls(mtls.clone())),
        }
    }

    /// Whether a gateway check (ext_authz, `/v1/check`) on this connection
    /// takes the end subject from the request it describes (a header,
    /// Envoy's peer principal) rather than from the caller's credentials:
    /// always in trusted mode, for configured gateways in mtls mode.
    pub fn gateway_names_subject(&self, client_certificate: Option<&CertificateNames>) -> bool {
        match self {
            Authenticator::Trusted => true,
            Authenticator::Jwt(_) => false,
            Authenticator::Mtls(mtls) => client_certificate
                .and_then(|cert| cert.subject(mtls.subject_name))
                .is_some_and(|subject| mtls.gateways.iter().any(|g| g == subject)),
        }
    }

    /// Trusted mode: the request's own `subject` is the caller.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Authenticator::Trusted)
    }

    /// Resolves the principal of a request from its credentials and the
    /// `subject` it names.
    pub fn authenticate(
        &self,
        credentials: Credentials<'_>,
        request_subject: &str,
    ) -> Result<Principal, AuthnError> {
        let (principal, credential) = match self {
            Authenticator::Trusted => {
                return Ok(Principal {
                    subject: request_subject.to_owned(),
                    roles: Vec::new(),
                })
            }
            Authenticator::Mtls(_) if credentials.vouched_by_gateway => {
                return Ok(Principal {
                    subject: request_subject.to_owned(),
                    roles: Vec::new(),
                })
            }
            Authenticator::Jwt(verifier) => {
                let header = credentials.authorization.ok_or(AuthnError::MissingToken)?;
                (verifier.verify(bearer_token(header)?)?, "token")
            }
            Authenticator::Mtls(mtls) => {
                let cert = credentials
                    .client_certificate
                    .ok_or(AuthnError::NoClientCertificate)?;
                let subject = cert
                    .subject(mtls.subject_name)
                    .ok_or(AuthnError::CertificateLacksName(mtls.subject_name.name()))?;
                let principal = Principal {
                    subject: subject.to_owned(),
                    roles: Vec::new(),
                };
                (principal, "certificate")
            }
        };
        if !request_subject.is_empty() && request_subject != principal.subject {
            return Err(AuthnError::SubjectMismatch {
                request: request_subject.to_owned(),
                token: principal.subject,
                credential,
            });
        }
        Ok(principal)
    }
}

fn bearer_token(header: &str) -> Result<&str, AuthnError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthnError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthnError::NotBearer);
    }
    Ok(token.trim())
}
