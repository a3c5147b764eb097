//! Field encryption keys: a keyring file (key id → 256-bit key), AES-256-GCM
//! envelopes, deterministic AES-256-GCM-SIV envelopes for equality joins,
//! keyed pseudonyms, rotation and rewrap.
//!
//! Envelopes are self-describing so any vigil with the keyring can open
//! them: `vigil:v2:<key id>:<base64url(nonce ‖ ciphertext)>` (random nonce)
//! and `vigil:v2d:<key id>:<…>` (deterministic). The sealed message carries
//! the value's label and the domain and object it was sealed for, all
//! authenticated: Unmask decides per label without trusting the caller, and
//! opens a value only for the domain and object it was sealed for (threat
//! model in docs/keys.md). The envelope prefix (version and key id) is the
//! AAD, so neither can be swapped. Legacy `vigil:v1` envelopes (label only)
//! still open; `vigil keys rewrap --object … --domain …` binds them.
//!
//! Architecture invariant: key bytes never appear in Debug output, errors,
//! logs or audit records.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aes_gcm::{aead::Aead, Aes256Gcm, KeyInit, Nonce};
use aes_gcm_siv::Aes256GcmSiv;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where the keyring is looked for when not given.
pub const DEFAULT_KEYRING: &str = "vigil-data/keyring.json";

/// Legacy envelopes: sealed for a label only. Read, never written (but by
/// a rewrap that keeps them as they were).
const RANDOM_V1: &str = "vigil:v1:";
const DETERMINISTIC_V1: &str = "vigil:v1d:";
/// Envelopes sealed for a label, a domain and an object.
const RANDOM_V2: &str = "vigil:v2:";
const DETERMINISTIC_V2: &str = "vigil:v2d:";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read keyring {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write keyring {path}: {message}")]
    Write { path: String, message: String },
    #[error("keyring {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("keyring {path} does not exist; a keyring named explicitly is never created on the fly (data would be encrypted under a key nobody else has): check the path, or create it with `vigil keys generate --keyring {path}`")]
    Missing { path: String },
}

/// Where the keyring is, and whether the operator named it: only the
/// default location is created on first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringLocation {
    Default(PathBuf),
    Given(PathBuf),
}

impl KeyringLocation {
    pub fn from_flag(given: Option<PathBuf>) -> KeyringLocation {
        given.map_or_else(
            || KeyringLocation::Default(PathBuf::from(DEFAULT_KEYRING)),
            KeyringLocation::Given,
        )
    }

    pub fn path(&self) -> &Path {
        match self {
            KeyringLocation::Default(path) | KeyringLocation::Given(path) => path,
        }
    }

    pub fn path_mut(&mut self) -> &mut PathBuf {
        match self {
            KeyringLocation::Default(path) | KeyringLocation::Given(path) => path,
        }
    }
}

/// Why a ciphertext cannot be opened. Messages never include the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("not a vigil ciphertext (expected vigil:v1:<key id>:<data>)")]
    NotCiphertext,
    #[error("malformed vigil ciphertext: {0}")]
    Malformed(&'static str),
    #[error("ciphertext was made with key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("ciphertext does not authenticate with key {0:?}: altered, or made elsewhere")]
    Forged(String),
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    version: u32,
    active: String,
    pseudonym_key: String,
    keys: BTreeMap<String, String>,
}

struct Key {
    bytes: [u8; 32],
    gcm: Aes256Gcm,
    siv: Aes256GcmSiv,
}

impl Key {
    fn new(bytes: [u8; 32]) -> Key {
        Key {
            gcm: Aes256Gcm::new((&bytes).into()),
            siv: Aes256GcmSiv::new((&bytes).into()),
            bytes,
        }
    }
}

pub struct Keyring {
    active: String,
    keys: BTreeMap<String, Key>,
    pseudonym_key: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    bytes.try_into().ok()
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// A new keyring with one random key.
    pub fn generate() -> Keyring {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_owned(), Key::new(rand::random()));
        Keyring {
            active: "k1".to_owned(),
            keys,
            pseudonym_key: rand::random(),
        }
    }

    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeyringError::Read {
            path: name.clone(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| KeyringError::Invalid {
            path: name.clone(),
            message,
        };
        let file: KeyringFile = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("not a vigil keyring: {e}")))?;
        if file.version != 1 {
            return Err(invalid(format!(
                "unsupported keyring version {}",
                file.version
            )));
        }
        let mut keys = BTreeMap::new();
        for (id, encoded) in &file.keys {
            if !valid_key_id(id) {
                return Err(invalid(format!(
                    "key id {id:?} must be 1-32 letters, digits, '-' or '_'"
                )));
            }
            let bytes = decode_key(encoded)
                .ok_or_else(|| invalid(format!("key {id:?} is not 32 bytes of base64url")))?;
            keys.insert(id.clone(), Key::new(bytes));
        }
        if !keys.contains_key(&file.active) {
            return Err(invalid(format!(
                "active key {:?} is not in the keyring",
                file.active
            )));
        }
        let pseudonym_key = decode_key(&file.pseudonym_key)
            .ok_or_else(|| invalid("pseudonym_key is not 32 bytes of base64url".into()))?;
        Ok(Keyring {
            active: file.active,
            keys,
            pseudonym_key,
        })
    }

    /// Opens the keyring at `location`: the default one is created the
    /// first time, a named one must exist.
    pub fn open(location: &KeyringLocation) -> Result<Keyring, KeyringError> {
        match location {
            KeyringLocation::Default(path) => Keyring::load_or_create(path),
            KeyringLocation::Given(path) if !path.exists() => Err(KeyringError::Missing {
                path: path.display().to_string(),
            }),
            KeyringLocation::Given(path) => Keyring::load(path),
        }
    }

    /// Loads `path`, creating a fresh keyring there the first time.
    pub fn load_or_create(path: &Path) -> Result<Keyring, KeyringError> {
        if path.exists() {
            return Keyring::load(path);
        }
        let keyring = Keyring::generate();
        keyring.save(path)?;
        Ok(keyring)
    }

    /// Writes the keyring (mode 0600) via a temporary file and a rename, so
    /// a crash never leaves half a keyring.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let name = path.display().to_string();
        let write_error = |e: std::io::Error| KeyringError::Write {
            path: name.clone(),
            message: e.to_string(),
        };
        let file = KeyringFile {
            version: 1,
            active: self.active.clone(),
            pseudonym_key: URL_SAFE_NO_PAD.encode(self.pseudonym_key),
            keys: self
                .keys
                .iter()
                .map(|(id, key)| (id.clone(), URL_SAFE_NO_PAD.encode(key.bytes)))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("a keyring always serializes");
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let temp = path.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        crate::keyfile::write_private(&temp, text.as_bytes()).map_err(write_error)?;
        std::fs::rename(&temp, path).map_err(write_error)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Adds a new random key and makes it the one that encrypts; older keys
    /// keep decrypting.
    pub fn rotate(&mut self) -> String {
        let next = (1..)
            .map(|n| format!("k{n}"))
            .find(|id| !self.keys.contains_key(id))
            .expect("an unused id exists");
        self.keys.insert(next.clone(), Key::new(rand::random()));
        self.active = next.clone();
        next
    }

    fn active(&self) -> &Key {
        &self.keys[&self.active]
    }

    /// The sealed message: what the value was sealed for, then the value.
    /// All of it is authenticated by the AEAD; v1 (no domain and object)
    /// is only ever read.
    fn seal_payload(seal: &Seal<'_>, value: &str) -> Vec<u8> {
        let label = &seal.label.as_bytes()[..seal.label.len().min(255)];
        let mut payload = Vec::with_capacity(
            5 + label.len() + seal.domain.len() + seal.object.len() + value.len(),
        );
        payload.push(label.len() as u8);
        payload.extend_from_slice(label);
        for part in [seal.domain, seal.object] {
            // Past 64 KiB the context is cut, and then never matches a
            // request again: fail closed.
            let part = &part.as_bytes()[..part.len().min(u16::MAX as usize)];
            payload.extend_from_slice(&(part.len() as u16).to_be_bytes());
            payload.extend_from_slice(part);
        }
        payload.extend_from_slice(value.as_bytes());
        payload
    }

    /// AES-256-GCM with a random 96-bit nonce, sealed for `seal`'s label,
    /// domain and object.
    pub fn encrypt(&self, seal: &Seal<'_>, value: &str) -> String {
        self.encrypt_random(RANDOM_V2, &Self::seal_payload(seal, value))
    }

    fn encrypt_random(&self, version: &str, payload: &[u8]) -> String {
        let prefix = format!("{version}{}:", self.active);
        let nonce: [u8; 12] = rand::random();
        let ciphertext = self
            .active()
            .gcm
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: payload,
                    aad: prefix.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any message under 64 GiB");
        let mut data = nonce.to_vec();
        data.extend_from_slice(&ciphertext);
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(data))
    }

    /// AES-256-GCM-SIV with a nonce derived from the sealed message
    /// (HMAC-SHA256 under the key), so equal values sealed for the same
    /// label, domain and object give equal ciphertexts (an equality join
    /// key) and nothing else leaks. Rotation changes the ciphertexts.
    pub fn encrypt_deterministic(&self, seal: &Seal<'_>, value: &str) -> String {
        self.encrypt_siv(DETERMINISTIC_V2, &Self::seal_payload(seal, value))
    }

    fn encrypt_siv(&self, version: &str, payload: &[u8]) -> String {
        let prefix = format!("{version}{}:", self.active);
        let key = self.active();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).expect("HMAC takes any key length");
        mac.update(payload);
        let digest = mac.finalize().into_bytes();
        let nonce = aes_gcm_siv::Nonce::from_slice(&digest[..12]);
        let ciphertext = key
            .siv
            .encrypt(
                nonce,
                aes_gcm_siv::aead::Payload {
                    msg: payload,
                    aad: prefix.as_bytes(),
                },
            )
            .expect("AES-GCM-SIV encrypts any message under 64 GiB");
        let mut data = digest[..12].to_vec();
        data.extend_from_slice(&ciphertext);
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(data))
    }

    /// A stable keyed pseudonym of `value`, usable as a join key: the same
    /// value gives the same pseudonym under the same keyring, across key
    /// rotations (it has its own key).
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.pseudonym_key)
            .expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        format!(
            "pn_{}",
            URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..12])
        )
    }

    pub fn is_ciphertext(text: &str) -> bool {
        Envelope::parse_prefix(text).is_some()
    }

    /// Opens an envelope: what it was sealed for and the value.
    pub fn decrypt(&self, text: &str) -> Result<Opened, CipherError> {
        let (envelope, rest) = Envelope::parse_prefix(text).ok_or(CipherError::NotCiphertext)?;
        let (key_id, data) = rest
            .split_once(':')
            .ok_or(CipherError::Malformed("no key id"))?;
        if !valid_key_id(key_id) {
            return Err(CipherError::Malformed("bad key id"));
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| CipherError::UnknownKey(key_id.to_owned()))?;
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| CipherError::Malformed("data is not base64url"))?;
        if data.len() < 12 + 16 + 1 {
            return Err(CipherError::Malformed("too short"));
        }
        let (nonce, ciphertext) = data.split_at(12);
        let aad = &text[..text.len() - rest.len() + key_id.len() + 1];
        let payload = if envelope.deterministic {
            key.siv.decrypt(
                aes_gcm_siv::Nonce::from_slice(nonce),
                aes_gcm_siv::aead::Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
        } else {
            key.gcm.decrypt(
                Nonce::from_slice(nonce),
                aes_gcm::aead::Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
        }
        .map_err(|_| CipherError::Forged(key_id.to_owned()))?;
        let mut reader = PayloadReader(&payload);
        let label_len = reader.take(1)?[0] as usize;
        let label = reader.text(label_len, "label")?;
        let sealed_for = if envelope.bound {
            let domain_len = reader.length()?;
            let domain = reader.text(domain_len, "domain")?;
            let object_len = reader.length()?;
            let object = reader.text(object_len, "object")?;
            Some(SealedFor { domain, object })
        } else {
            None
        };
        let value = reader.text(reader.0.len(), "value")?;
        Ok(Opened {
            label,
            sealed_for,
            value,
        })
    }

    /// Re-encrypts an envelope under the active key, keeping its mode and
    /// what it was sealed for. A legacy (v1) envelope is sealed for `bind`
    /// when given (the upgrade), else re-encrypted as it was.
    pub fn rewrap(&self, text: &str, bind: Option<&SealedFor>) -> Result<String, CipherError> {
        let opened = self.decrypt(text)?;
        let deterministic = Envelope::parse_prefix(text).is_some_and(|(e, _)| e.deterministic);
        let sealed_for = opened.sealed_for.as_ref().or(bind);
        let Some(sealed_for) = sealed_for else {
            let payload = Self::legacy_payload(&opened.label, &opened.value);
            return Ok(if deterministic {
                self.encrypt_siv(DETERMINISTIC_V1, &payload)
            } else {
                self.encrypt_random(RANDOM_V1, &payload)
            });
        };
        let seal = Seal {
            label: &opened.label,
            domain: &sealed_for.domain,
            object: &sealed_for.object,
        };
        Ok(if deterministic {
            self.encrypt_deterministic(&seal, &opened.value)
        } else {
            self.encrypt(&seal, &opened.value)
        })
    }

    /// v1's sealed message: the label, then the value.
    fn legacy_payload(label: &str, value: &str) -> Vec<u8> {
        let label = &label.as_bytes()[..label.len().min(255)];
        let mut payload = Vec::with_capacity(1 + label.len() + value.len());
        payload.push(label.len() as u8);
        payload.extend_from_slice(label);
        payload.extend_from_slice(value.as_bytes());
        payload
    }

    /// Whether an envelope was made with an older key, or (when
    /// `upgrading`) is a legacy one not bound to a domain and object.
    pub fn needs_rewrap(&self, text: &str, upgrading: bool) -> bool {
        let Some((envelope, rest)) = Envelope::parse_prefix(text) else {
            return false;
        };
        (upgrading && !envelope.bound)
            || rest
                .split_once(':')
                .is_some_and(|(id, _)| id != self.active)
    }
}

/// What a value is sealed for: its label, and the domain and object of the
/// Mask call that sealed it. Unmask opens it only for the same domain and
/// object, so a ciphertext cannot be carried to another tenant or table.
#[derive(Debug, Clone, Copy)]
pub struct Seal<'a> {
    pub label: &'a str,
    pub domain: &'a str,
    pub object: &'a str,
}

/// The domain and object an envelope was sealed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFor {
    pub domain: String,
    pub object: String,
}

/// An opened envelope. `sealed_for` is `None` for legacy (v1) envelopes,
/// which carry only the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub label: String,
    pub sealed_for: Option<SealedFor>,
    pub value: String,
}

/// An envelope's version, read from its prefix.
#[derive(Debug, Clone, Copy)]
struct Envelope {
    deterministic: bool,
    /// v2: sealed for a domain and object.
    bound: bool,
}

impl Envelope {
    fn parse_prefix(text: &str) -> Option<(Envelope, &str)> {
        [
            (RANDOM_V2, false, true),
            (DETERMINISTIC_V2, true, true),
            (RANDOM_V1, false, false),
            (DETERMINISTIC_V1, true, false),
        ]
        .into_iter()
        .find_map(|(prefix, deterministic, bound)| {
            text.strip_prefix(prefix).map(|rest| {
                (
                    Envelope {
                        deterministic,
                        bound,
                    },
                    rest,
                )
            })
        })
    }
}

/// Reads a sealed message front to back.
struct PayloadReader<'a>(&'a [u8]);

impl<'a> PayloadReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CipherError> {
        if self.0.len() < n {
            return Err(CipherError::Malformed("payload too short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn length(&mut self) -> Result<usize, CipherError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]) as usize)
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<String, CipherError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            CipherError::Malformed(match what {
                "label" => "label is not UTF-8",
                "domain" => "domain is not UTF-8",
                "object" => "object is not UTF-8",
                _ => "value is not UTF-8",
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: Seal<'static> = Seal {
        label: "phone",
        domain: "acme",
        object: "crm.customers",
    };

    fn opened(label: &str, domain: &str, object: &str, value: &str) -> Opened {
        Opened {
            label: label.into(),
            sealed_for: Some(SealedFor {
                domain: domain.into(),
                object: object.into(),
            }),
            value: value.into(),
        }
    }

    #[test]
    fn envelopes_round_trip_and_survive_rotation() {
        let mut keyring = Keyring::generate();
        let sealed = keyring.encrypt(&PHONE, "13812345678");
        assert!(sealed.starts_with("vigil:v2:k1:"));
        assert_ne!(
            sealed,
            keyring.encrypt(&PHONE, "13812345678"),
            "random nonces"
        );
        let same = keyring.encrypt_deterministic(&PHONE, "13812345678");
        assert_eq!(same, keyring.encrypt_deterministic(&PHONE, "13812345678"));
        let elsewhere = Seal {
            object: "hr.employees",
            ..PHONE
        };
        assert_ne!(
            same,
            keyring.encrypt_deterministic(&elsewhere, "13812345678"),
            "equal only within one domain and object"
        );
        keyring.rotate();
        assert_eq!(
            keyring.decrypt(&sealed).unwrap(),
            opened("phone", "acme", "crm.customers", "13812345678")
        );
        assert_eq!(keyring.decrypt(&same).unwrap().value, "13812345678");
        assert!(keyring.needs_rewrap(&sealed, false));
        let rewrapped = keyring.rewrap(&sealed, None).unwrap();
        assert!(rewrapped.starts_with("vigil:v2:k2:") && !keyring.needs_rewrap(&rewrapped, true));
        assert_eq!(
            keyring.decrypt(&rewrapped).unwrap(),
            opened("phone", "acme", "crm.customers", "13812345678")
        );
    }

    #[test]
    fn legacy_envelopes_open_and_rewrap_binds_them() {
        let keyring = Keyring::generate();
        let legacy = keyring.encrypt_random(RANDOM_V1, &Keyring::legacy_payload("email", "a@x.cn"));
        assert!(legacy.starts_with("vigil:v1:k1:"));
        assert_eq!(
            keyring.decrypt(&legacy).unwrap(),
            Opened {
                label: "email".into(),
                sealed_for: None,
                value: "a@x.cn".into()
            }
        );
        assert!(!keyring.needs_rewrap(&legacy, false));
        assert!(keyring.needs_rewrap(&legacy, true));
        let unbound = keyring.rewrap(&legacy, None).unwrap();
        assert!(unbound.starts_with("vigil:v1:k1:"));
        let bind = SealedFor {
            domain: "acme".into(),
            object: "crm.customers".into(),
        };
        let bound = keyring.rewrap(&legacy, Some(&bind)).unwrap();
        assert!(bound.starts_with("vigil:v2:k1:"));
        assert_eq!(
            keyring.decrypt(&bound).unwrap(),
            opened("email", "acme", "crm.customers", "a@x.cn")
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let keyring = Keyring::generate();
        let sealed = keyring.encrypt(&PHONE, "a@example.com");
        let swapped = sealed.replacen(":k1:", ":k9:", 1);
        assert_eq!(
            keyring.decrypt(&swapped),
            Err(CipherError::UnknownKey("k9".into()))
        );
        // The version is authenticated too: a v2 envelope relabelled v1
        // does not open (and so cannot shed its binding).
        let downgraded = sealed.replacen("vigil:v2:", "vigil:v1:", 1);
        assert_eq!(
            keyring.decrypt(&downgraded),
            Err(CipherError::Forged("k1".into()))
        );
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            keyring.decrypt(&altered),
            Err(CipherError::Forged(_) | CipherError::Malformed(_))
        ));
        assert_eq!(keyring.decrypt("hello"), Err(CipherError::NotCiphertext));
        assert_eq!(
            keyring.decrypt("vigil:v2:k1:%%%"),
            Err(CipherError::Malformed("data is not base64url"))
        );
    }
}
