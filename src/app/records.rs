//! The audit record of each kind of call, built in one place so handlers
//! stay thin and every record of a kind has the same fields. Records carry
//! no clear sensitive values: subjects and configured attributes pass
//! through the [`Redactor`], masked fields are summarized, never copied.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    audit::{kind, Detail, Record, Redactor},
    authn::{AuthnError, Principal},
    authz::AccessRequest,
    listen::Peer,
    policy::{PolicyError, Reloaded},
};

/// An Authorize decision.
pub(super) struct DecisionRecord<'a> {
    pub id: &'a str,
    pub principal: &'a Principal,
    pub access: &'a AccessRequest<'a>,
    pub attributes: &'a HashMap<String, String>,
    pub allowed: bool,
    pub reason: &'a str,
    pub policy_version: &'a str,
    /// The shadow policy's differing answer, if any.
    pub shadow: Option<Value>,
    /// The rate limit that denied a call the policy allowed.
    pub limit: Option<&'a str>,
}

impl DecisionRecord<'_> {
    pub fn build(self, redactor: &Redactor) -> Record {
        let mut record = Record::new(kind::DECISION);
        record.id = Some(self.id.to_owned());
        record.sub = Some(redactor.subject(&self.principal.subject));
        record.obj = Some(self.access.object.to_owned());
        record.act = Some(self.access.action.to_owned());
        if !self.access.domain.is_empty() {
            record.dom = Some(self.access.domain.to_owned());
        }
        record.attrs = redactor.attributes(self.attributes);
        record.allowed = Some(self.allowed);
        record.reason = Some(self.reason.to_owned());
        record.pv = Some(self.policy_version.to_owned());
        let mut detail = serde_json::Map::new();
        if !self.principal.roles.is_empty() {
            detail.insert(
                "token_roles".into(),
                serde_json::json!(self.principal.roles),
            );
        }
        if let Some(shadow) = self.shadow {
            detail.insert("shadow".into(), shadow);
        }
        if let Some(limit) = self.limit {
            detail.insert("limit".into(), limit.into());
        }
        if !detail.is_empty() {
            record.detail = Some(Value::Object(detail).into());
        }
        record
    }
}

/// A refused identity: the claimed subject (redacted, and cut short: an
/// unauthenticated caller chooses it), the refusal, its stable code and
/// the peer.
pub(super) fn authn_failure(
    redactor: &Redactor,
    claimed_subject: &str,
    error: &AuthnError,
    rpc: &str,
    peer: &str,
) -> Record {
    let mut record = Record::new(kind::AUTHN_FAILURE);
    if !claimed_subject.is_empty() {
        record.sub = Some(compact(redactor.subject(claimed_subject)));
    }
    record.allowed = Some(false);
    record.reason = Some(error.to_string());
    record.detail =
        Some(serde_json::json!({ "rpc": rpc, "code": error.code(), "peer": peer }).into());
    record
}

/// Claimed subjects longer than this are cut, with a digest of the whole
/// so equal claims still match.
const CLAIM_SHOWN: usize = 64;

fn compact(claimed: String) -> String {
    if claimed.len() <= CLAIM_SHOWN {
        return claimed;
    }
    use sha2::{Digest, Sha256};
    let mut cut = 48;
    while !claimed.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(claimed.as_bytes());
    format!(
        "{}…({} bytes, sha256 {})",
        &claimed[..cut],
        claimed.len(),
        hex::encode(&digest[..8])
    )
}

/// An admin call (Audit, PolicyAdmin), admitted or not.
pub(super) fn admin(
    redactor: &Redactor,
    subject: &str,
    rpc: &str,
    admitted: bool,
    reason: String,
    peer: Option<Peer>,
) -> Record {
    let mut record = Record::new(kind::ADMIN);
    record.sub = Some(redactor.subject(subject));
    record.act = Some(rpc.to_owned());
    record.allowed = Some(admitted);
    record.reason = Some(reason);
    if let Some(peer) = peer {
        record.detail = Some(serde_json::json!({ "peer": peer.to_string() }).into());
    }
    record
}

/// A Mask or Unmask call: the `read` decision on its object. Handlers add
/// the outcome (the masked-field summary, the labels opened, a refusal).
pub(super) fn reading(
    kind: &'static str,
    redactor: &Redactor,
    id: &str,
    asker: &AccessRequest<'_>,
    allowed: bool,
    reason: String,
    policy_version: &str,
) -> Record {
    let mut record = Record::new(kind);
    record.id = Some(id.to_owned());
    record.sub = Some(redactor.subject(asker.subject));
    record.obj = Some(asker.object.to_owned());
    record.act = Some(asker.action.to_owned());
    if !asker.domain.is_empty() {
        record.dom = Some(asker.domain.to_owned());
    }
    record.allowed = Some(allowed);
    record.reason = Some(reason);
    record.pv = Some(policy_version.to_owned());
    record
}

/// A reload of the policy in `dir`, accepted or rejected.
pub(super) fn reload(
    dir: &str,
    trigger: &str,
    result: &Result<Reloaded, PolicyError>,
    serving_version: &str,
) -> Record {
    let mut record = Record::new(kind::RELOAD);
    record.obj = Some(dir.to_owned());
    let detail: Detail = match result {
        Ok(reloaded) => {
            record.allowed = Some(true);
            record.pv = Some(reloaded.version.clone());
            record.reason = Some(if reloaded.changed {
                format!(
                    "policy {} replaced {}",
                    reloaded.version, reloaded.previous_version
                )
            } else {
                format!("policy unchanged at {}", reloaded.version)
            });
            serde_json::json!({
                "trigger": trigger,
                "previous": reloaded.previous_version,
                "changed": reloaded.changed,
            })
            .into()
        }
        Err(error) => {
            record.allowed = Some(false);
            record.pv = Some(serving_version.to_owned());
            record.reason = Some(format!(
                "reload rejected, previous policy keeps serving: {error}"
            ));
            serde_json::json!({ "trigger": trigger }).into()
        }
    };
    record.detail = Some(detail);
    record
}
