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
//! ```

use std::collections::HashMap;

use serde::Deserialize;

use super::PolicySet;
use crate::authz::AccessRequest;

/// Cases file looked for in the policy directory when none is given.
pub const DEFAULT_CASES_FILE: &str = "policy_test.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default, rename = "case")]
    pub cases: Vec<AccessCase>,
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
            let domain = if self.domain.is_empty() { String::new() } else { format!(" in {}", self.domain) };
            format!("#{}: {} {} {}{domain}", index + 1, self.subject, self.action, self.object)
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
                    let got = if verdict.allowed() { Expect::Allow } else { Expect::Deny };
                    (got != case.expect).then(|| {
                        format!("expected {}, got {}: {}", case.expect, got, verdict.reason(&request))
                    })
                }
            };
            Outcome { label: case.label(index), failure }
        })
        .collect()
}
