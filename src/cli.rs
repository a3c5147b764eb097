//! Command-line arguments exactly as given. No IO and no validation beyond
//! syntax: [`crate::config`] turns [`ServeArgs`] into a validated config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "vigil", version, about = "Data governance and access-control policy sidecar")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "VIGIL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Authorize (and the other vigil.v1 services) over gRPC.
    Serve(ServeArgs),
    /// Decide one request offline and print the deciding rule.
    ///
    /// Exit code: 0 allowed, 1 denied, 2 error.
    Check(CheckArgs),
    /// Mint a development JWT signed with the local HS256 secret.
    Token(TokenArgs),
    /// Inspect the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The request's `subject` is used as given (local transports only).
    Trusted,
    /// The subject comes from a verified bearer token.
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fdatasync after every record.
    Always,
    /// Group commit: one fdatasync covers every record appended since the last.
    Batch,
    /// No fdatasync: a crash may lose the records of the last few milliseconds.
    Off,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Policy directory holding model.conf and policy.csv.
    #[arg(long, env = "VIGIL_POLICIES")]
    pub policies: Option<PathBuf>,
    /// `HOST:PORT` or `unix:/path/to.sock`; may be repeated.
    #[arg(long, env = "VIGIL_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Directory of the hash-chained audit log.
    #[arg(long, env = "VIGIL_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// When the audit log is made durable.
    #[arg(long, env = "VIGIL_AUDIT_SYNC", value_enum)]
    pub audit_sync: Option<SyncMode>,
    /// How callers are identified.
    #[arg(long, env = "VIGIL_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Allow `--auth trusted` on non-local (TCP, non-loopback) listeners.
    #[arg(long, env = "VIGIL_FORCE_TRUSTED_REMOTE")]
    pub force_trusted_remote: bool,
    /// HS256 shared secret file.
    #[arg(long, env = "VIGIL_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256/ES256 public key (PEM).
    #[arg(long, env = "VIGIL_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JSON Web Key Set file (RS256/ES256 keys, selected by `kid`).
    #[arg(long, env = "VIGIL_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "VIGIL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "VIGIL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claim holding the caller's roles (dotted path for nested claims).
    #[arg(long, env = "VIGIL_JWT_ROLES_CLAIM")]
    pub jwt_roles_claim: Option<String>,
    /// Clock skew tolerated on exp/nbf, e.g. `30s`.
    #[arg(long, env = "VIGIL_JWT_LEEWAY")]
    pub jwt_leeway: Option<String>,
    /// Largest accepted request message, in bytes.
    #[arg(long, env = "VIGIL_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most items accepted in one AuthorizeBatch.
    #[arg(long, env = "VIGIL_MAX_BATCH_ITEMS")]
    pub max_batch_items: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub object: String,
    #[arg(long)]
    pub action: String,
    #[arg(long, default_value = "")]
    pub domain: String,
    /// Extra request tokens, `name=value`; may be repeated.
    #[arg(long = "attr", value_parser = parse_key_value)]
    pub attributes: Vec<(String, String)>,
    /// Roles the subject holds besides those in the policy (as a token's roles claim would).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Also print the role path and every rule considered.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub subject: String,
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// HS256 secret; created with 32 random bytes if missing.
    #[arg(long, env = "VIGIL_JWT_SECRET_FILE", default_value = crate::config::DEV_JWT_SECRET_FILE)]
    pub secret_file: PathBuf,
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long)]
    pub audience: Option<String>,
    /// Lifetime, e.g. `1h`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Claim to put the roles in.
    #[arg(long, default_value = "roles")]
    pub roles_claim: String,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit non-zero naming the first bad record.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = crate::config::DEFAULT_AUDIT_DIR)]
    pub audit_dir: PathBuf,
    /// `SEQ:HASH` that must be present in the chain (a receipt or an anchor).
    #[arg(long = "anchor", alias = "receipt")]
    pub anchors: Vec<String>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}
