//! `vigil policy test`: table-driven cases that pin down what a policy
//! must decide, in TOML, run in CI.
//!
//! ```toml
//! [[case]]
//! name = "analysts read CRM"
//! subject = "alice"
//! object = "crm.customers"
//! action = "read"
//! expect = "allow"            # or "deny"
//! # optional: domain = "acme", roles = ["analyst"], attributes = { region = "eu" }
//!
//! [[mask_case]]
//! name = "support sees phone numbers masked"
//! subject = "bob"
//! object = "crm.customers"
//! record = { phone = "13812345678", notes = "call 13987654321" }
//! expect = { phone = "138****5678", notes = "call 139****4321" }   # field → output
//! treatments = { phone = "mask" }                                  # path → treatment
//! ```

use std::collections::HashMap;

use serde::Deserialize;

use super::{
    reading::{reader, refusal, MaskLimits, Reading},
    PolicySet,
};
use crate::{
    authz::AccessRequest,
    limits::{Call, LimitOptions, Limiter},
};

/// Cases file looked for in the policy directory when none is given.
pub const DEFAULT_CASES_FILE: &str = "policy_test.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default, rename = "case")]
    pub cases: Vec<AccessCase>,
    #[serde(default, rename = "mask_case")]
    pub mask_cases: Vec<MaskCase>,
    #[serde(default, rename = "limit_case")]
    pub limit_cases: Vec<LimitCase>,
}

/// Calls made back to back against limits.toml, on fresh budgets: how
/// many a rate lets through, or (with `label`) how many values of the
/// label a reveal quota lets the subject see in clear.
///
/// ```toml
/// [[limit_case]]
/// name = "analysts burst to 100 reads"
/// subject = "alice"
/// object = "crm.customers"
/// action = "read"
/// calls = 150
/// expect_allowed = 100
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCase {
    #[serde(default)]
    pub name: Option<String>,
    pub subject: String,
    pub object: String,
    #[serde(default = "read_action")]
    pub action: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Count values of this label shown in clear instead of calls.
    #[serde(default)]
    pub label: Option<String>,
    pub calls: u32,
    pub expect_allowed: u32,
}

fn read_action() -> String {
    super::reading::READ.to_owned()
}

/// A record masked for a subject, with the expected output fields and/or
/// the expected treatment per path. Outputs of keyed treatments
/// (pseudonyms, ciphertexts) differ per keyring: check those by treatment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskCase {
    #[serde(default)]
    pub name: Option<String>,
    pub subject: String,
    pub object: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub record: toml::Table,
    #[serde(default)]
    pub expect: toml::Table,
    #[serde(default)]
    pub treatments: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessCase {
    #[serde(default)]
    pub name: Option<String>,
    pub subject: String,
    pub object: String,
    pub action: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    pub expect: Expect,
}

impl AccessCase {
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| {
            let domain = if self.domain.is_empty() {
                String::new()
            } else {
                format!(" in {}", self.domain)
            };
            format!(
                "#{}: {} {} {}{domain}",
                index + 1,
                self.subject,
                self.action,
                self.object
            )
        })
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub label: String,
    /// `None` when the case passed.
    pub failure: Option<String>,
}

pub fn parse(text: &str) -> Result<CaseFile, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

pub fn run(policy: &PolicySet, file: &CaseFile) -> Vec<Outcome> {
    let mut outcomes = run_access(policy, file);
    outcomes.extend(run_masking(policy, file));
    outcomes.extend(run_limits(policy, file));
    outcomes
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_default(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn run_masking(policy: &PolicySet, file: &CaseFile) -> Vec<Outcome> {
    let keys = crate::keys::Keyring::generate();
    let no_attributes = HashMap::new();
    file.mask_cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let label = case.name.clone().unwrap_or_else(|| {
                format!("mask #{}: {} on {}", index + 1, case.subject, case.object)
            });
            let asker = reader(
                &case.subject,
                &case.roles,
                &case.object,
                &case.domain,
                &no_attributes,
            );
            let failure = (|| -> Option<String> {
                let mut masker = match policy.masker_for(
                    &asker,
                    &keys,
                    MaskLimits {
                        max_depth: 64,
                        max_values: usize::MAX,
                    },
                    crate::limits::Reveals::unlimited(),
                ) {
                    Err(e) => return Some(format!("request error: {e}")),
                    Ok(Reading::Denied { reason }) => return Some(refusal(&asker, &reason)),
                    Ok(Reading::Admitted { masker, .. }) => masker,
                };
                let json = toml_to_json(&toml::Value::Table(case.record.clone()));
                let Some(mut record) = crate::mask::struct_from_json(&json) else {
                    return Some("record must be a table".into());
                };
                let mut actions = Vec::new();
                if let Err(e) = masker.mask(0, &mut record, &mut actions) {
                    return Some(e.to_string());
                }
                let out = crate::mask::struct_to_json(&record);
                let mut problems = Vec::new();
                for (field, expected) in &case.expect {
                    let expected = toml_to_json(expected);
                    let got = out.get(field).cloned().unwrap_or(serde_json::Value::Null);
                    if got != expected {
                        problems.push(format!("{field}: expected {expected}, got {got}"));
                    }
                }
                for (path, treatment) in &case.treatments {
                    let got: Vec<&str> = actions
                        .iter()
                        .filter(|a| a.path == *path)
                        .map(|a| a.treatment.as_str())
                        .collect();
                    if got != [treatment.as_str()] {
                        problems.push(format!(
                            "{path}: expected treatment {treatment}, got {}",
                            if got.is_empty() {
                                "none".to_owned()
                            } else {
                                got.join(", ")
                            }
                        ));
                    }
                }
                (!problems.is_empty()).then(|| problems.join("; "))
            })();
            Outcome { label, failure }
        })
        .collect()
}

fn run_limits(policy: &PolicySet, file: &CaseFile) -> Vec<Outcome> {
    let no_attributes = HashMap::new();
    file.limit_cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let label = case.name.clone().unwrap_or_else(|| {
                format!(
                    "limit #{}: {} {} {}",
                    index + 1,
                    case.subject,
                    case.action,
                    case.object
                )
            });
            let limits = policy.limits.fresh();
            let limiter = Limiter::new(LimitOptions::default()).expect("no backend to check");
            let call = Call {
                subject: &case.subject,
                roles: &case.roles,
                object: &case.object,
                action: &case.action,
                domain: &case.domain,
            };
            let holds_role = |role: &str| policy.holds_role(&case.subject, &case.domain, role);
            let allowed = match &case.label {
                None => (0..case.calls)
                    .filter(|_| {
                        limiter
                            .check_here(&limits.rates_for(&call, &holds_role))
                            .is_ok()
                    })
                    .count() as u32,
                Some(name) => {
                    let Some(known) = policy.classification.labels.get(name) else {
                        return Outcome {
                            label,
                            failure: Some(format!("label {name:?} is not in the classification")),
                        };
                    };
                    let asker = reader(
                        &case.subject,
                        &case.roles,
                        &case.object,
                        &case.domain,
                        &no_attributes,
                    );
                    let clear = matches!(
                        policy.grant(&asker, known),
                        Some((crate::mask::Treatment::Clear, _))
                    ) || (policy.grant(&asker, known).is_none()
                        && known.default == crate::mask::Treatment::Clear);
                    let mut reveals = limiter.reveals(limits.quotas_for(&call, &holds_role));
                    (0..case.calls)
                        .filter(|_| clear && reveals.reveal(&known.name, &known.level).is_ok())
                        .count() as u32
                }
            };
            let failure = (allowed != case.expect_allowed).then(|| {
                format!(
                    "expected {} of {} allowed, got {allowed}",
                    case.expect_allowed, case.calls
                )
            });
            Outcome { label, failure }
        })
        .collect()
}

fn run_access(policy: &PolicySet, file: &CaseFile) -> Vec<Outcome> {
    file.cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let request = AccessRequest {
                subject: &case.subject,
                extra_roles: &case.roles,
                object: &case.object,
                action: &case.action,
                domain: &case.domain,
                attributes: &case.attributes,
            };
            let failure = match policy.engine.decide(&request) {
                Err(e) => Some(format!("request error: {e}")),
                Ok(verdict) => {
                    let got = if verdict.allowed() {
                        Expect::Allow
                    } else {
                        Expect::Deny
                    };
                    (got != case.expect).then(|| {
                        format!(
                            "expected {}, got {}: {}",
                            case.expect,
                            got,
                            verdict.reason(&request)
                        )
                    })
                }
            };
            Outcome {
                label: case.label(index),
                failure,
            }
        })
        .collect()
}
