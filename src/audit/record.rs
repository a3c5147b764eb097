//! The audit record and its on-disk encoding.
//!
//! One record per line. A line is the record serialized as compact JSON
//! (fields in declaration order, `prev` last), with `,"hash":"<hex>"`
//! spliced in before the closing brace:
//!
//! ```text
//! {"seq":7,"ts":"…","kind":"decision",…,"prev":"<43 b64>","hash":"<43 b64>"}\n
//! ```
//!
//! `hash` = SHA-256 over the exact bytes of the line without the
//! `,"hash":"…"` part, i.e. the JSON object `{…,"prev":"…"}`. Because `prev`
//! is inside those bytes, each hash covers the whole chain before it, and a
//! change to any byte of any line breaks the chain.
//!
//! Hashes are written in unpadded base64url (43 characters) rather than hex
//! to keep a decision record under 400 bytes; receipts returned to callers
//! use lowercase hex, and every tool accepts both.

use std::borrow::Cow;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `prev` of the first record of a log.
pub const GENESIS: Hash = [0; 32];

/// Length of a hash in unpadded base64url.
pub const HASH_B64_LEN: usize = 43;

/// Length of `,"hash":"` + the hash + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + HASH_B64_LEN + 2;

/// The text form of a hash inside records.
pub fn hash_text(hash: &Hash) -> String {
    URL_SAFE_NO_PAD.encode(hash)
}

/// Parses a hash written as 64 hex digits or 43 base64url characters.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    if text.len() == 64 {
        hex::decode_to_slice(text, &mut hash).ok()?;
        return Some(hash);
    }
    if text.len() == HASH_B64_LEN {
        // On the stack: verification reads two hashes per record.
        let mut decoded = [0u8; 33];
        let len = URL_SAFE_NO_PAD.decode_slice(text, &mut decoded).ok()?;
        hash.copy_from_slice(decoded.get(..len).filter(|d| d.len() == 32)?);
        // Reject non-canonical encodings so one hash has one spelling.
        let mut canonical = [0u8; HASH_B64_LEN];
        URL_SAFE_NO_PAD.encode_slice(hash, &mut canonical).ok()?;
        return (canonical == text.as_bytes()).then_some(hash);
    }
    None
}

/// Record kinds written by vigil.
pub mod kind {
    pub const DECISION: &str = "decision";
    pub const AUTHN_FAILURE: &str = "authn_failure";
    pub const STARTUP: &str = "startup";
    pub const SHUTDOWN: &str = "shutdown";
    pub const RECOVERY: &str = "recovery";
    pub const RELOAD: &str = "reload";
    pub const MASK: &str = "mask";
    pub const UNMASK: &str = "unmask";
    pub const ADMIN: &str = "admin";
    /// Segments removed by retention; a checkpoint covers them.
    pub const PRUNE: &str = "prune";
    /// The active file vanished or was replaced under the writer.
    pub const FILE_LOST: &str = "audit_file_lost";
    /// Writing works again after a failure.
    pub const RESUMED: &str = "audit_resumed";
    /// History found missing at start-up, acknowledged by the operator
    /// (`--audit-accept-gap`): what was lost, written before anything new.
    pub const GAP: &str = "gap";
    /// The audit witness refused this chain (a fork): shipping stopped.
    pub const WITNESS_FORK: &str = "witness_fork";
}

/// The kind of a stored line, read from its fixed place (third field,
/// after `seq` and `ts`) without parsing the whole line.
pub fn kind_of(line: &[u8]) -> Option<&str> {
    let head = &line[..line.len().min(96)];
    let at = head.windows(8).position(|w| w == b"\"kind\":\"")? + 8;
    let end = head[at..].iter().position(|&b| b == b'"')? + at;
    std::str::from_utf8(&head[at..end]).ok()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Assigned by the writer: 1 for the first record, then +1.
    pub seq: u64,
    /// RFC 3339 UTC time of the event.
    pub ts: String,
    pub kind: Cow<'static, str>,
    /// Decision id, unique per decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dom: Option<String>,
    /// Request attributes; configured keys hold HMAC digests, not values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Policy version in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv: Option<String>,
    /// Kind-specific details (never clear sensitive values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// Hash of the previous record (base64url). Assigned by the writer.
    pub prev: String,
}

impl Record {
    /// A record of `kind` stamped with the current time.
    pub fn new(kind: &'static str) -> Record {
        Record {
            seq: 0,
            ts: now_rfc3339(),
            kind: Cow::Borrowed(kind),
            id: None,
            sub: None,
            obj: None,
            act: None,
            dom: None,
            attrs: None,
            allowed: None,
            reason: None,
            pv: None,
            detail: None,
            prev: String::new(),
        }
    }

    /// The first record of every run: what is serving, under which policy.
    pub fn startup(policy_version: &str, detail: serde_json::Value) -> Record {
        let mut record = Record::new(kind::STARTUP);
        record.pv = Some(policy_version.to_owned());
        record.detail = Some(detail.into());
        record
    }

    /// The last record of every run, with why it ended.
    pub fn shutdown(reason: String) -> Record {
        let mut record = Record::new(kind::SHUTDOWN);
        record.reason = Some(reason);
        record
    }
}

/// A record's kind-specific details, held as the compact JSON text they
/// are written as. A hot handler serializes its typed summary straight
/// into it: a Mask summary built as `serde_json::Value` maps, serialized
/// and dropped cost ~9% of the call. Read back, the text stays as hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Detail(Box<serde_json::value::RawValue>);

impl Detail {
    pub fn new(detail: &impl Serialize) -> Detail {
        Detail(
            serde_json::value::to_raw_value(detail)
                .expect("details serialize: strings, numbers, lists and string-keyed maps"),
        )
    }

    /// The JSON text, as written in the record.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The details as a JSON value, for readers that look inside.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).expect("a Detail holds valid JSON")
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        self.json() == other.json()
    }
}

impl From<serde_json::Value> for Detail {
    fn from(value: serde_json::Value) -> Detail {
        Detail::new(&value)
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Appends the line for `record` (which must have `seq` and `prev` set) to
/// `out` and returns its hash.
pub fn encode(record: &Record, out: &mut Vec<u8>) -> Hash {
    let start = out.len();
    serde_json::to_writer(&mut *out, record)
        .expect("a record always serializes: plain strings and numbers");
    let hash: Hash = Sha256::digest(&out[start..]).into();
    // The object ends with '}'; splice the hash in before it.
    out.pop();
    out.extend_from_slice(b",\"hash\":\"");
    let mut text = [0u8; HASH_B64_LEN];
    let written = URL_SAFE_NO_PAD
        .encode_slice(hash, &mut text)
        .expect("43 bytes hold 32 bytes of base64");
    out.extend_from_slice(&text[..written]);
    out.extend_from_slice(b"\"}\n");
    hash
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line does not end with a \"hash\" field of 43 base64url characters")]
    NoHash,
    #[error("stored hash {stored} does not match the record's content (computed {computed})")]
    HashMismatch { stored: String, computed: String },
    #[error("record is not valid JSON: {0}")]
    Json(String),
}

/// The chain fields of a line, read without parsing the JSON: enough to
/// verify the chain at the speed of SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFields {
    pub seq: u64,
    pub prev: Hash,
    pub hash: Hash,
}

/// A line checked against its own hash and parsed.
#[derive(Debug)]
pub struct CheckedLine {
    pub record: Record,
    pub hash: Hash,
}

const PREV_SUFFIX_LEN: usize = 9 + HASH_B64_LEN + 1;

/// Checks one line (without its newline) against its stored hash and reads
/// `seq` (first field) and `prev` (last field before the hash), where the
/// writer puts them.
pub fn check(line: &[u8]) -> Result<ChainFields, LineError> {
    if line.len() < HASH_SUFFIX_LEN + PREV_SUFFIX_LEN + 8 || !line.ends_with(b"\"}") {
        return Err(LineError::NoHash);
    }
    let split = line.len() - HASH_SUFFIX_LEN;
    let (body, suffix) = line.split_at(split);
    if !suffix.starts_with(b",\"hash\":\"") {
        return Err(LineError::NoHash);
    }
    let stored_text = &suffix[9..9 + HASH_B64_LEN];
    let stored = std::str::from_utf8(stored_text)
        .ok()
        .and_then(parse_hash)
        .ok_or(LineError::NoHash)?;
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    let computed: Hash = hasher.finalize().into();
    if stored != computed {
        return Err(LineError::HashMismatch {
            stored: String::from_utf8_lossy(stored_text).into_owned(),
            computed: hash_text(&computed),
        });
    }
    let layout = || LineError::Json("a record starts with \"seq\" and ends with \"prev\"".into());
    let digits = body.strip_prefix(b"{\"seq\":").ok_or_else(layout)?;
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .ok_or_else(layout)?;
    let seq = std::str::from_utf8(&digits[..end])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(layout)?;
    let prev_field = &body[body.len() - PREV_SUFFIX_LEN..];
    if !prev_field.starts_with(b",\"prev\":\"") || !prev_field.ends_with(b"\"") {
        return Err(layout());
    }
    let prev = std::str::from_utf8(&prev_field[9..9 + HASH_B64_LEN])
        .ok()
        .and_then(parse_hash)
        .ok_or_else(layout)?;
    Ok(ChainFields {
        seq,
        prev,
        hash: computed,
    })
}

/// What a line says of itself, read where the writer puts it, without
/// re-hashing: for passing lines on (the audit witness), where the receiver
/// checks the chain and the verifier the hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFields<'a> {
    pub seq: u64,
    pub ts: &'a str,
    pub kind: &'a str,
    /// base64url, as written.
    pub prev: &'a str,
    pub hash: &'a str,
}

pub fn stored_fields(line: &[u8]) -> Option<StoredFields<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    if text.len() < HASH_SUFFIX_LEN + PREV_SUFFIX_LEN + 8 || !text.ends_with("\"}") {
        return None;
    }
    let (body, suffix) = text.split_at(text.len() - HASH_SUFFIX_LEN);
    let hash = suffix.strip_prefix(",\"hash\":\"")?.get(..HASH_B64_LEN)?;
    let prev = body[body.len() - PREV_SUFFIX_LEN..]
        .strip_prefix(",\"prev\":\"")?
        .get(..HASH_B64_LEN)?;
    let rest = body.strip_prefix("{\"seq\":")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let seq = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(",\"ts\":\"")?;
    let ts = &rest[..rest.find('"')?];
    let kind = kind_of(line)?;
    Some(StoredFields {
        seq,
        ts,
        kind,
        prev,
        hash,
    })
}

/// Checks one line and parses the whole record.
pub fn decode(line: &[u8]) -> Result<CheckedLine, LineError> {
    parse(line, check(line)?)
}

/// Parses a line that [`check`] already accepted (with the fields it read).
pub fn parse(line: &[u8], fields: ChainFields) -> Result<CheckedLine, LineError> {
    let body = &line[..line.len() - HASH_SUFFIX_LEN];
    let mut object = Vec::with_capacity(body.len() + 1);
    object.extend_from_slice(body);
    object.push(b'}');
    let record: Record =
        serde_json::from_slice(&object).map_err(|e| LineError::Json(e.to_string()))?;
    if record.seq != fields.seq || parse_hash(&record.prev) != Some(fields.prev) {
        return Err(LineError::Json(
            "chain fields disagree with the record".into(),
        ));
    }
    Ok(CheckedLine {
        record,
        hash: fields.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_has_one_spelling_per_form() {
        let hash: Hash = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let text = hash_text(&hash);
        assert_eq!(parse_hash(&text), Some(hash));
        assert_eq!(parse_hash(&hex::encode(hash)), Some(hash));
        // The last character carries 2 unused bits: set, they spell the
        // same bytes another way, which is refused.
        let last = text.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        let variant_char = alphabet.as_bytes()[index | 1] as char;
        assert_ne!(
            variant_char, last,
            "the sample's last character has its low bits clear"
        );
        let variant = format!("{}{variant_char}", &text[..text.len() - 1]);
        assert_eq!(parse_hash(&variant), None);
        assert_eq!(parse_hash(&text[..42]), None);
        assert_eq!(parse_hash(&format!("{text}A")), None);
        assert_eq!(parse_hash("!".repeat(43).as_str()), None);
    }

    fn sample(seq: u64, prev: Hash) -> Record {
        let mut record = Record::new(kind::DECISION);
        record.seq = seq;
        record.sub = Some("alice".into());
        record.allowed = Some(true);
        record.prev = hash_text(&prev);
        record
    }

    #[test]
    fn round_trip_and_every_byte_matters() {
        let record = sample(1, GENESIS);
        let mut line = Vec::new();
        let hash = encode(&record, &mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        let checked = decode(body).unwrap();
        assert_eq!(checked.hash, hash);
        assert_eq!(checked.record, record);
        for i in 0..body.len() {
            let mut tampered = body.to_vec();
            tampered[i] ^= 0x01;
            assert!(
                decode(&tampered).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn decision_records_stay_small() {
        let mut record = sample(123_456, GENESIS);
        record.ts = now_rfc3339();
        record.id = Some("Xq0-a1B2c3D4e5F6g7H8iA".into());
        record.sub = Some("svc-reporting".into());
        record.obj = Some("crm.customers".into());
        record.act = Some("read".into());
        record.reason = Some(
            "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via svc-reporting → analyst"
                .into(),
        );
        record.pv = Some("0123456789abcdef".into());
        let mut line = Vec::new();
        encode(&record, &mut line);
        assert!(line.len() <= 400, "{} bytes", line.len());
    }
}
