//! Keeping the audit log from becoming a leak itself: configured attribute
//! keys (and optionally subjects) are written as keyed HMAC-SHA256 digests,
//! so an auditor holding the key can still match "same value" without the
//! log showing it (the approach of Vault's audit devices).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::checkpoint::{load_or_create_secret, KeyFileError};

/// Which values reach the audit log only as digests, and the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionOptions {
    /// HMAC key (created if missing), kept beside the audit directory.
    pub key_file: PathBuf,
    /// Attribute keys whose values are written as digests.
    pub attributes: Vec<String>,
    /// Subjects are written as digests too.
    pub subjects: bool,
}

/// Prefix that marks a digest in place of a clear value.
pub const HMAC_PREFIX: &str = "hmac:";

#[derive(Clone, Default)]
pub struct Redactor {
    key: Option<[u8; 32]>,
    attributes: HashSet<String>,
    subjects: bool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("attributes", &self.attributes)
            .field("subjects", &self.subjects)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    pub fn new(
        key: [u8; 32],
        attributes: impl IntoIterator<Item = String>,
        subjects: bool,
    ) -> Redactor {
        Redactor {
            key: Some(key),
            attributes: attributes.into_iter().collect(),
            subjects,
        }
    }

    /// The redactor `options` ask for; the key file is read (or created)
    /// only when something is to be digested.
    pub fn from_options(options: &RedactionOptions) -> Result<Redactor, KeyFileError> {
        if options.attributes.is_empty() && !options.subjects {
            return Ok(Redactor::default());
        }
        let key = load_or_create_secret(&options.key_file)?;
        Ok(Redactor::new(
            key,
            options.attributes.iter().cloned(),
            options.subjects,
        ))
    }

    /// `hmac:` + the first 128 bits of HMAC-SHA256(key, value), base64url.
    pub fn digest(&self, value: &str) -> String {
        let key = self.key.unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{HMAC_PREFIX}{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
    }

    pub fn subject(&self, subject: &str) -> String {
        if self.subjects && self.key.is_some() {
            self.digest(subject)
        } else {
            subject.to_owned()
        }
    }

    /// Whether `subject` as written in a record stands for `clear`.
    pub fn subject_matches(&self, written: &str, clear: &str) -> bool {
        written == clear || (self.key.is_some() && written == self.digest(clear))
    }

    /// Attributes as they go into a record, in key order.
    pub fn attributes(
        &self,
        attributes: &HashMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        if attributes.is_empty() {
            return None;
        }
        Some(
            attributes
                .iter()
                .map(|(key, value)| {
                    let value = if self.key.is_some() && self.attributes.contains(key) {
                        self.digest(value)
                    } else {
                        value.clone()
                    };
                    (key.clone(), value)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_values_become_stable_digests() {
        let redactor = Redactor::new([9; 32], ["ssn".to_owned()], true);
        let attributes = HashMap::from([
            ("ssn".to_owned(), "110101199003077777".to_owned()),
            ("region".to_owned(), "eu".to_owned()),
        ]);
        let written = redactor.attributes(&attributes).unwrap();
        assert_eq!(written["region"], "eu");
        assert!(written["ssn"].starts_with(HMAC_PREFIX) && !written["ssn"].contains("1101"));
        assert_eq!(written["ssn"], redactor.digest("110101199003077777"));
        assert!(redactor.subject_matches(&redactor.subject("alice"), "alice"));
        assert_ne!(redactor.subject("alice"), "alice");
        let other = Redactor::new([8; 32], ["ssn".to_owned()], true);
        assert_ne!(other.digest("alice"), redactor.digest("alice"));
    }
}
