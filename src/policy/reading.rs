//! Reading an object's records: the one entry point shared by the Mask and
//! Unmask RPCs, `vigil mask` and the policy's mask cases. A reader needs
//! `read` on the object; an admitted reader gets a [`Masker`] that applies
//! what the policy grants it per label.

use std::collections::HashMap;

use super::PolicySet;
use crate::{
    authz::{AccessRequest, RequestError},
    keys::Keyring,
    limits::Reveals,
    mask::{Grant, Label, Masker, Visibility},
};

/// Why records cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadingError {
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The classification is missing or empty: masking fails closed.
    #[error("{0}")]
    Unclassified(String),
}

/// Bounds on one masking call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskLimits {
    /// Deepest nesting accepted in a record.
    pub max_depth: usize,
    /// Most values (fields, list items, treated spans) visited.
    pub max_values: usize,
}

/// The action a subject needs on an object to receive its records at all.
pub const READ: &str = "read";

/// `subject` (with `extra_roles`) asking to read `object`.
pub fn reader<'a>(
    subject: &'a str,
    extra_roles: &'a [String],
    object: &'a str,
    domain: &'a str,
    attributes: &'a HashMap<String, String>,
) -> AccessRequest<'a> {
    AccessRequest {
        subject,
        extra_roles,
        object,
        action: READ,
        domain,
        attributes,
    }
}

/// Whether a reader may have an object's records, with the reason either
/// way; the admitted one comes with its masker.
pub enum Reading<M> {
    Admitted { reason: String, masker: M },
    Denied { reason: String },
}

/// The message a refused reader gets.
pub fn refusal(asker: &AccessRequest<'_>, reason: &str) -> String {
    format!("{} may not read {}: {reason}", asker.subject, asker.object)
}

/// What a reader may see per label: the policy's grants, with each value
/// shown in clear spent from the reader's reveal quotas.
pub struct Governed<'s> {
    policy: &'s PolicySet,
    asker: &'s AccessRequest<'s>,
    pub reveals: Reveals<'s>,
}

impl Visibility for Governed<'_> {
    fn grant(&mut self, label: &Label) -> Grant {
        self.policy.grant(self.asker, label)
    }

    fn reveal(&mut self, label: &Label) -> Result<(), String> {
        self.reveals.reveal(&label.name, &label.level)
    }

    fn weaker(&mut self, label: &Label) -> Grant {
        self.policy.weaker_grant(self.asker, label)
    }
}

impl PolicySet {
    /// Decides `read` for `asker` (built by [`reader`]) and, if allowed,
    /// builds the masker for its records: path rules scoped to the object,
    /// detectors, and per label the treatment this policy grants `asker`,
    /// weakened past the reveal quotas `reveals` holds.
    pub fn masker_for<'s>(
        &'s self,
        asker: &'s AccessRequest<'s>,
        keys: &'s Keyring,
        limits: MaskLimits,
        reveals: Reveals<'s>,
    ) -> Result<Reading<Masker<'s, Governed<'s>>>, ReadingError> {
        debug_assert_eq!(asker.action, READ, "a reader asks to read");
        if let Some(why) = &self.unclassified {
            return Err(ReadingError::Unclassified(why.clone()));
        }
        let verdict = self.engine.decide(asker)?;
        let reason = verdict.reason(asker);
        if !verdict.allowed() {
            return Ok(Reading::Denied { reason });
        }
        let masker = self.admitted_masker(asker, keys, limits, reveals);
        Ok(Reading::Admitted { reason, masker })
    }

    /// The masker of a reader [`masker_for`](Self::masker_for) admitted on
    /// this snapshot, rebuilt with other reveal budgets (the lease a
    /// counting pass took) without deciding `read` again.
    pub fn admitted_masker<'s>(
        &'s self,
        asker: &'s AccessRequest<'s>,
        keys: &'s Keyring,
        limits: MaskLimits,
        reveals: Reveals<'s>,
    ) -> Masker<'s, Governed<'s>> {
        let visibility = Governed {
            policy: self,
            asker,
            reveals,
        };
        Masker::new(
            &self.classification,
            asker.object,
            keys,
            visibility,
            limits.max_depth,
        )
        .with_domain(asker.domain)
        .with_budget(limits.max_values)
    }
}
