//! Command-line arguments exactly as given. No IO and no validation beyond
//! syntax: [`crate::config`] turns [`ServeArgs`] into a validated config.
//!
//! The option enums belong to their domains ([`SyncMode`] to the audit log,
//! [`AuthMode`] to identity, ...), which know nothing of clap; this module
//! teaches clap their names.

use std::path::PathBuf;

use clap::{builder::PossibleValue, Args, Parser, Subcommand, ValueEnum};

use crate::{
    audit::{self, export::Format, OnFailure, SyncMode},
    authn::{self, AuthMode},
    keys,
    logging::LogFormat,
    policy,
    tls::SubjectName,
};

#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "Data governance and access-control policy sidecar"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "VIGIL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Authorize (and the other vigil.v1 services) over gRPC.
    Serve(Box<ServeArgs>),
    /// Decide one request offline and print the deciding rule.
    ///
    /// Exit code: 0 allowed, 1 denied, 2 error.
    Check(CheckArgs),
    /// Mint a development JWT signed with the local HS256 secret.
    Token(TokenArgs),
    /// Inspect the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Lint, test and compare policy directories.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Mask JSONL records from stdin to stdout, for ETL jobs and exports.
    ///
    /// A record that cannot be masked is named on stderr and left out.
    /// Exit code: 0 done, 1 the subject may not read the object, 2 error
    /// (or records left out).
    Mask(MaskArgs),
    /// Manage the field encryption keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
pub struct MaskArgs {
    #[arg(long, default_value = policy::DEFAULT_DIR)]
    pub policies: PathBuf,
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub object: String,
    #[arg(long, default_value = "")]
    pub domain: String,
    /// Roles the subject holds besides those in the policy.
    #[arg(long, value_delimiter = ',', value_parser = trimmed)]
    pub roles: Vec<String>,
    /// Keyring for encrypting treatments [default: vigil-data/keyring.json,
    /// created if missing; a keyring named here must exist].
    #[arg(long, env = "VIGIL_KEYRING")]
    pub keyring: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub max_depth: usize,
    /// Most values (fields, list items, spans in text) one record may hold.
    #[arg(long, default_value_t = 200_000)]
    pub max_values: usize,
    /// Print, instead of the records, per label how many values were found
    /// and how many are not valid values of the label's format (the data
    /// quality of a file before an ETL load).
    #[arg(long)]
    pub report: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new keyring with one key.
    Generate(KeyringArgs),
    /// Add a key that encrypts from now on; older keys keep decrypting.
    Rotate(KeyringArgs),
    /// Re-encrypt every vigil ciphertext in JSONL (stdin → stdout) under
    /// the active key; with --object, also seal legacy (v1) ciphertexts for
    /// that object and --domain, so Unmask opens them only there.
    Rewrap(RewrapArgs),
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    #[arg(long, env = "VIGIL_KEYRING", default_value = keys::DEFAULT_KEYRING)]
    pub keyring: PathBuf,
    /// Object legacy (v1) ciphertexts are sealed for: the object of the
    /// Mask calls that made them.
    #[arg(long)]
    pub object: Option<String>,
    /// Domain legacy ciphertexts are sealed for (with --object).
    #[arg(long, default_value = "", requires = "object")]
    pub domain: String,
}

#[derive(Debug, Args)]
pub struct KeyringArgs {
    #[arg(long, env = "VIGIL_KEYRING", default_value = keys::DEFAULT_KEYRING)]
    pub keyring: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory; `file:line: message` per finding.
    ///
    /// Exit code: 0 valid (warnings may be listed), 1 errors found.
    Check(PolicyDirArgs),
    /// Run table-driven cases (TOML) against a policy directory.
    ///
    /// Exit code: 0 all passed, 1 a case failed, 2 the cases could not run.
    Test(PolicyTestArgs),
    /// What would change if `--candidate` replaced `--policies`: the rule
    /// lines added and removed, and, with `--from-audit`, every recorded
    /// decision replayed against both.
    Diff(PolicyDiffArgs),
}

#[derive(Debug, Args)]
pub struct PolicyDirArgs {
    #[arg(long, default_value = policy::DEFAULT_DIR)]
    pub policies: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    #[arg(long, default_value = policy::DEFAULT_DIR)]
    pub policies: PathBuf,
    /// Cases file; default `<policies>/policy_test.toml`.
    #[arg(long)]
    pub cases: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PolicyDiffArgs {
    #[arg(long, default_value = policy::DEFAULT_DIR)]
    pub policies: PathBuf,
    #[arg(long)]
    pub candidate: PathBuf,
    /// Audit directory whose decision records are replayed.
    #[arg(long)]
    pub from_audit: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration and every file it names (policies,
    /// keys, keyring), print what would be served, and exit (0: valid,
    /// 2: not) without listening or writing the audit log.
    #[arg(long)]
    pub check_config: bool,
    /// Policy directory holding model.conf and policy.csv.
    #[arg(long, env = "VIGIL_POLICIES")]
    pub policies: Option<PathBuf>,
    /// `HOST:PORT` or `unix:/path/to.sock`; may be repeated.
    #[arg(long, env = "VIGIL_LISTEN", value_delimiter = ',', value_parser = trimmed)]
    pub listen: Vec<String>,
    /// Where the PolicyAdmin and Audit services are served (off by
    /// default). In trusted mode it must be `unix:PATH`, and only the
    /// --admin-uids may call it; in jwt mode callers need the admin role.
    #[arg(long, env = "VIGIL_ADMIN_LISTEN", value_delimiter = ',', value_parser = trimmed)]
    pub admin_listen: Vec<String>,
    /// Serve the HTTP/JSON API (`/v1/authorize`, `/v1/mask`, `/v1/check`
    /// for nginx auth_request) on `HOST:PORT` or `unix:/path.sock`
    /// [default: off].
    #[arg(long, env = "VIGIL_HTTP_LISTEN", value_parser = trimmed)]
    pub http_listen: Option<String>,
    /// Export traces over OTLP/gRPC to this collector, e.g.
    /// `http://127.0.0.1:4317` [default: off].
    #[arg(long, env = "VIGIL_OTLP_ENDPOINT", value_parser = trimmed)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled, 0.0 to 1.0; a caller's sampled
    /// `traceparent` is always followed [default: 1.0].
    #[arg(long, env = "VIGIL_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Serve Prometheus metrics (`/metrics`) and HTTP probes (`/healthz`,
    /// `/readyz`) on `HOST:PORT` or `unix:/path.sock` [default: off].
    #[arg(long, env = "VIGIL_METRICS_LISTEN", value_parser = trimmed)]
    pub metrics_listen: Option<String>,
    /// Unix users (uids) that may call admin services on a trusted-mode
    /// admin socket [default: the uid vigil runs as].
    #[arg(long, env = "VIGIL_ADMIN_UIDS", value_delimiter = ',')]
    pub admin_uids: Vec<u32>,
    /// Directory of the hash-chained audit log.
    #[arg(long, env = "VIGIL_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// When the audit log is made durable.
    #[arg(long, env = "VIGIL_AUDIT_SYNC", value_enum)]
    pub audit_sync: Option<SyncMode>,
    /// While the audit log cannot be written: fail requests at once, or block.
    #[arg(long, env = "VIGIL_AUDIT_ON_FAILURE", value_enum)]
    pub audit_on_failure: Option<OnFailure>,
    /// With `--audit-on-failure block`: how long a request waits, e.g. `5s`.
    #[arg(long, env = "VIGIL_AUDIT_BLOCK_TIMEOUT")]
    pub audit_block_timeout: Option<String>,
    /// Start a new audit segment at this size in bytes (0: never).
    #[arg(long, env = "VIGIL_AUDIT_ROTATE_BYTES")]
    pub audit_rotate_bytes: Option<u64>,
    /// Start a new audit segment at this age, e.g. `24h`.
    #[arg(long, env = "VIGIL_AUDIT_ROTATE_AGE")]
    pub audit_rotate_age: Option<String>,
    /// Keep at most this many audit segments (older ones are pruned; a
    /// signed checkpoint summarizes them).
    #[arg(long, env = "VIGIL_AUDIT_RETAIN_SEGMENTS")]
    pub audit_retain_segments: Option<usize>,
    /// Sign a checkpoint this often when the log has grown, e.g. `10s`.
    #[arg(long, env = "VIGIL_AUDIT_CHECKPOINT_EVERY")]
    pub audit_checkpoint_every: Option<String>,
    /// File holding the Ed25519 key (64 hex digits) that signs
    /// checkpoints; created if missing.
    #[arg(long, env = "VIGIL_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// HMAC key for digests of sensitive values; created if missing.
    #[arg(long, env = "VIGIL_AUDIT_HMAC_KEY_FILE")]
    pub audit_hmac_key_file: Option<PathBuf>,
    /// Attribute keys written to the audit log as HMAC digests.
    #[arg(long, env = "VIGIL_AUDIT_HMAC_ATTRIBUTES", value_delimiter = ',', value_parser = trimmed)]
    pub audit_hmac_attributes: Vec<String>,
    /// Write subjects to the audit log as HMAC digests too.
    #[arg(long, env = "VIGIL_AUDIT_HMAC_SUBJECTS")]
    pub audit_hmac_subjects: bool,
    /// Start even though the audit directory lost history (a missing
    /// segment or checkpoints.jsonl, a tail cut below a signed
    /// checkpoint): a `gap` record naming what was lost is written and
    /// signed first. Without it, vigil refuses to start on such a log.
    #[arg(long, env = "VIGIL_AUDIT_ACCEPT_GAP")]
    pub audit_accept_gap: bool,
    /// Ship the audit chain to a PostgreSQL witness off the host
    /// (`postgres://user@host:port/db`), in the background [default: off].
    #[arg(long, env = "VIGIL_SHIP_TO")]
    pub ship_to: Option<String>,
    /// The chain's id at the witness [default: HOST:AUDIT_DIR].
    #[arg(long, env = "VIGIL_SHIP_CHAIN")]
    pub ship_chain: Option<String>,
    /// Keep limits.toml's budgets in Redis (`redis://host:port/db`), shared
    /// by every sidecar using it [default: in this process].
    #[arg(long, env = "VIGIL_LIMITS_BACKEND")]
    pub limits_backend: Option<String>,
    /// A candidate policy directory evaluated beside the live one on real
    /// traffic; divergences are audited and counted, the live answer served.
    #[arg(long, env = "VIGIL_SHADOW_POLICIES")]
    pub shadow_policies: Option<PathBuf>,
    /// Watch the policy directory and reload on change (default on).
    #[arg(long, env = "VIGIL_WATCH", action = clap::ArgAction::Set, num_args = 1)]
    pub watch: Option<bool>,
    /// Request-handling threads; 0 (the default) uses one per available
    /// core. With one, vigil runs a single-threaded runtime, which on one
    /// core serves about twice the requests of a one-worker thread pool.
    #[arg(long, env = "VIGIL_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Role that may call the Audit and PolicyAdmin services in jwt mode.
    #[arg(long, env = "VIGIL_ADMIN_ROLE")]
    pub admin_role: Option<String>,
    /// How callers are identified.
    #[arg(long, env = "VIGIL_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Allow `--auth trusted` on non-local (TCP, non-loopback) listeners
    /// without mTLS.
    #[arg(long, env = "VIGIL_FORCE_TRUSTED_REMOTE")]
    pub force_trusted_remote: bool,
    /// Allow `--auth jwt` on non-local TCP listeners without TLS, where
    /// bearer tokens cross the network in clear.
    #[arg(long, env = "VIGIL_FORCE_PLAINTEXT_JWT")]
    pub force_plaintext_jwt: bool,
    /// Serve TLS on every TCP listener with this certificate chain (PEM,
    /// leaf first); re-read when it changes.
    #[arg(long, env = "VIGIL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "VIGIL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to these CAs (PEM): mTLS. The
    /// metrics listener asks for one but does not require it.
    #[arg(long, env = "VIGIL_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With `--auth mtls`: which client certificate name is the subject
    /// [default: spiffe].
    #[arg(long, env = "VIGIL_MTLS_SUBJECT", value_enum)]
    pub mtls_subject: Option<SubjectName>,
    /// With `--auth mtls`: a gateway's certificate subject (e.g. Envoy's
    /// SPIFFE ID) whose ext_authz checks and /v1/check subrequests name the
    /// end subject; may be repeated.
    #[arg(long, env = "VIGIL_MTLS_GATEWAY", value_delimiter = ',', value_parser = trimmed)]
    pub mtls_gateway: Vec<String>,
    /// HS256 shared secret file.
    #[arg(long, env = "VIGIL_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256/ES256 public key (PEM).
    #[arg(long, env = "VIGIL_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JSON Web Key Set file (RS256/ES256 keys, selected by `kid`).
    #[arg(long, env = "VIGIL_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim: the identity provider (or tenant) whose
    /// tokens count. Required with a key option unless --jwt-any-issuer
    /// waives it.
    #[arg(long, env = "VIGIL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accept tokens whatever their issuer (only if the key signs for one
    /// issuer alone: providers whose tenants share keys need --jwt-issuer).
    #[arg(long, env = "VIGIL_JWT_ANY_ISSUER")]
    pub jwt_any_issuer: bool,
    /// Required `aud` claim: vigil's own name, so tokens minted for other
    /// services are refused. Required with a key option unless
    /// --jwt-any-audience waives it.
    #[arg(long, env = "VIGIL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Accept tokens whatever their audience (only if every token the key
    /// signs is meant for vigil).
    #[arg(long, env = "VIGIL_JWT_ANY_AUDIENCE")]
    pub jwt_any_audience: bool,
    /// Claim holding the caller's roles (dotted path for nested claims).
    #[arg(long, env = "VIGIL_JWT_ROLES_CLAIM")]
    pub jwt_roles_claim: Option<String>,
    /// Clock skew tolerated on exp/nbf, e.g. `30s`.
    #[arg(long, env = "VIGIL_JWT_LEEWAY")]
    pub jwt_leeway: Option<String>,
    /// Largest accepted request message, in bytes.
    #[arg(long, env = "VIGIL_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most items accepted in one AuthorizeBatch (and records in one Mask).
    #[arg(long, env = "VIGIL_MAX_BATCH_ITEMS")]
    pub max_batch_items: Option<usize>,
    /// Deepest nesting accepted in a Mask record.
    #[arg(long, env = "VIGIL_MAX_DEPTH")]
    pub max_depth: Option<usize>,
    /// Most attributes accepted in one request [default: 64].
    #[arg(long, env = "VIGIL_MAX_ATTRIBUTES")]
    pub max_attributes: Option<usize>,
    /// Most values (fields, list items, spans in text) one Mask call may
    /// visit; past it the call is RESOURCE_EXHAUSTED [default: 200000].
    #[arg(long, env = "VIGIL_MAX_MASK_VALUES")]
    pub max_mask_values: Option<usize>,
    /// Longest a call may take, e.g. `30s` [default: 30s].
    #[arg(long, env = "VIGIL_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Open connections across all listeners; past it new clients wait
    /// [default: the open-file limit minus 128].
    #[arg(long, env = "VIGIL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// HTTP/2 streams one connection may have open at once [default: 200].
    #[arg(long, env = "VIGIL_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    /// A connection must finish the HTTP/2 handshake within this [default: 10s].
    #[arg(long, env = "VIGIL_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<String>,
    /// A connection the peer sends nothing on for this long is closed
    /// [default: 5m].
    #[arg(long, env = "VIGIL_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// HTTP/2 PING to a connection quiet for this long; one unanswered for
    /// 20 s closes it (a peer gone without a FIN) [default: 1m; `0s`: off].
    #[arg(long, env = "VIGIL_KEEPALIVE_INTERVAL")]
    pub keepalive_interval: Option<String>,
    /// Keyring for field encryption [default: vigil-data/keyring.json,
    /// created if missing; a keyring named here must exist].
    #[arg(long, env = "VIGIL_KEYRING")]
    pub keyring: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, default_value = policy::DEFAULT_DIR)]
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
    #[arg(long, value_delimiter = ',', value_parser = trimmed)]
    pub roles: Vec<String>,
    /// Also print the roles the subject holds, which engine decided, and
    /// the policy version.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub subject: String,
    #[arg(long, value_delimiter = ',', value_parser = trimmed)]
    pub roles: Vec<String>,
    /// HS256 secret; created with 32 random bytes if missing.
    #[arg(long, env = "VIGIL_JWT_SECRET_FILE", default_value = authn::DEV_SECRET_FILE)]
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
    /// Print records (filtered) as JSONL (the stored lines) or CSV.
    Export(ExportArgs),
    /// Every chain a PostgreSQL witness holds: head, lag, last checkpoint,
    /// forks, gaps; exit 1 if any chain has a fork or a gap.
    Fleet(FleetArgs),
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The witness store (`postgres://user@host:port/db`).
    #[arg(long = "from", env = "VIGIL_SHIP_TO")]
    pub from: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, default_value = audit::options::DEFAULT_DIR)]
    pub audit_dir: PathBuf,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Records at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Records at or before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this subject (matches HMAC'd subjects given --hmac-key-file).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only allowed (true) or denied (false) decisions.
    #[arg(long)]
    pub allowed: Option<String>,
    /// Records from this sequence number on.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// HMAC key used by the server, to match HMAC'd subjects.
    #[arg(long)]
    pub hmac_key_file: Option<PathBuf>,
}

/// Exit codes: 0 verified; 1 tampering or a gap found; 2 usage or I/O
/// error (a missing directory, an unreadable file); 3 verified, but a
/// receipt or anchor names a record retention removed (cannot be checked).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = audit::options::DEFAULT_DIR)]
    pub audit_dir: PathBuf,
    /// `SEQ:HASH` that must be present in the chain (an anchor held elsewhere).
    #[arg(long = "anchor")]
    pub anchors: Vec<String>,
    /// `SEQ:HASH` receipt from an Authorize or Mask response to check.
    #[arg(long = "receipt")]
    pub receipts: Vec<String>,
    /// File holding a trusted copy of the checkpoint signing public key
    /// (64 hex digits).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Also check the directory against a PostgreSQL witness: everything
    /// the witness holds must be in the local log, byte for byte.
    #[arg(long, conflicts_with = "from")]
    pub witness: Option<String>,
    /// Verify the central copy in a PostgreSQL witness instead of a
    /// directory (with --chain).
    #[arg(long = "from")]
    pub from: Option<String>,
    /// The chain at the witness [default: HOST:AUDIT_DIR, as vigil serve
    /// ships it].
    #[arg(long)]
    pub chain: Option<String>,
}

/// A list item as meant: `--roles "viewer, analyst"` is two roles, not one
/// with a leading space.
fn trimmed(s: &str) -> Result<String, String> {
    Ok(s.trim().to_owned())
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

/// `ValueEnum` for a domain enum: each variant with its name on the command
/// line, its aliases and its help.
macro_rules! value_enum {
    ($type:ty { $($variant:path => $name:literal $(| $alias:literal)* : $help:literal),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($variant => PossibleValue::new($name)$(.alias($alias))*.help($help),)+
                })
            }
        }
    };
}

value_enum!(LogFormat {
    LogFormat::Text => "text": "human-readable lines",
    LogFormat::Json => "json": "one JSON object per line",
});

value_enum!(AuthMode {
    AuthMode::Trusted => "trusted": "the request's `subject` is used as given (local transports only)",
    AuthMode::Jwt => "jwt": "the subject comes from a verified bearer token",
    AuthMode::Mtls => "mtls": "the subject is a name of the verified TLS client certificate (--mtls-subject)",
});

value_enum!(SubjectName {
    SubjectName::Spiffe => "spiffe": "the SPIFFE ID (URI SAN with the spiffe:// scheme)",
    SubjectName::UriSan => "uri-san": "the first URI SAN",
    SubjectName::DnsSan => "dns-san": "the first DNS SAN",
    SubjectName::EmailSan => "email-san": "the first email SAN",
    SubjectName::Cn => "cn": "the subject's common name",
});

value_enum!(SyncMode {
    SyncMode::Always => "always": "fdatasync after every record",
    SyncMode::Batch => "batch": "group commit: one fdatasync covers every record appended since the last",
    SyncMode::Off => "off": "answers never wait for a sync; a background fdatasync every 200 ms bounds what a power failure can lose",
});

value_enum!(OnFailure {
    OnFailure::FailClosed => "fail_closed" | "fail-closed": "answer UNAVAILABLE at once: never an unaudited decision",
    OnFailure::Block => "block": "retry the write for up to the block timeout, then fail closed",
});

value_enum!(Format {
    Format::Jsonl => "jsonl": "the stored lines, byte for byte",
    Format::Csv => "csv": "one row per record, for spreadsheets",
});
