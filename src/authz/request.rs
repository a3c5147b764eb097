//! What the engine is asked and what it answers: the request and its
//! tokens, rule lines with their origin, and the verdict with the evidence
//! that explains it (the deciding rule, the role path).

use super::*;

/// One rule line from policy.csv, already checked against the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// `p`, `p2`, `g`, `g2`, ...
    pub ptype: String,
    pub values: Vec<String>,
    /// Where the rule came from, for reasons and lint messages.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// How one request token of the model's `r = ...` line is filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestToken {
    Subject,
    Domain,
    Object,
    Action,
    /// Any other token, filled from `attributes[name]`.
    Attribute(String),
}

impl RequestToken {
    pub(super) fn from_name(name: &str) -> RequestToken {
        match name {
            "sub" => RequestToken::Subject,
            "dom" => RequestToken::Domain,
            "obj" => RequestToken::Object,
            "act" => RequestToken::Action,
            other => RequestToken::Attribute(other.to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model is not valid: {0}")]
    Model(String),
    #[error("model has no request definition `r`")]
    NoRequestDefinition,
    #[error("policy cannot be loaded into the model: {0}")]
    Policy(String),
}

/// Errors in the request itself (as opposed to a denial).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error(
        "the model's request line needs token `{token}`, but the request has no {source_field}"
    )]
    MissingToken { token: String, source_field: String },
}

/// A request after authentication: `subject` is either verified or trusted.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub subject: &'a str,
    /// Roles the caller holds outside the policy (a token's roles claim).
    pub extra_roles: &'a [String],
    pub object: &'a str,
    pub action: &'a str,
    pub domain: &'a str,
    pub attributes: &'a HashMap<String, String>,
}

/// A rule that took part in a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub origin: Option<Origin>,
    pub text: String,
    /// The rule's `sub` value, where the role path ends.
    pub subject: Option<String>,
}

impl fmt::Display for MatchedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin} [{}]", self.text),
            None => write!(f, "[{}]", self.text),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Permit {
        /// `None` when the model allows without a matching rule (e.g. an
        /// effect of `!some(where (p.eft == deny))`).
        rule: Option<MatchedRule>,
        /// Subject → role → ... → the rule's subject, when roles were involved.
        role_path: Vec<String>,
    },
    Deny(Denial),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No rule allows the request.
    NoMatch,
    /// No rule allows it, and the model decides per domain while the
    /// request names none: most likely the caller's mistake.
    NoDomain,
    /// A matching rule with a deny effect decided.
    Rule {
        rule: MatchedRule,
        role_path: Vec<String>,
    },
    /// The engine failed on this request; denied because vigil fails closed.
    EngineFailure(String),
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Permit { .. })
    }

    /// Human-readable reason for the response and the audit record.
    pub fn reason(&self, request: &AccessRequest<'_>) -> String {
        match self {
            Verdict::Permit {
                rule: Some(rule),
                role_path,
            } => {
                format!("allowed by {rule}{}", describe_path(role_path))
            }
            Verdict::Permit { rule: None, .. } => {
                "allowed by the model's effect: no rule denies it".to_owned()
            }
            Verdict::Deny(Denial::Rule { rule, role_path }) => {
                format!("denied by {rule}{}", describe_path(role_path))
            }
            Verdict::Deny(Denial::NoMatch) => {
                let domain = if request.domain.is_empty() {
                    String::new()
                } else {
                    format!(" in domain {}", request.domain)
                };
                format!(
                    "no policy rule allows {} to {} {}{domain}",
                    request.subject, request.action, request.object
                )
            }
            Verdict::Deny(Denial::NoDomain) => format!(
                "no policy rule allows {} to {} {}: this model decides per domain (tenant) \
                 and the request names none; set the request's domain",
                request.subject, request.action, request.object
            ),
            Verdict::Deny(Denial::EngineFailure(why)) => {
                format!("denied: policy evaluation failed: {why}")
            }
        }
    }
}

pub(super) fn describe_path(path: &[String]) -> String {
    if path.len() < 2 {
        String::new()
    } else {
        format!(" via {}", path.join(" → "))
    }
}
