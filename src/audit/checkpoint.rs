//! Signed checkpoints: (seq, head hash, time) signed with Ed25519.
//!
//! A checkpoint lets a verifier detect what a hash chain alone cannot: the
//! tail cut off or rolled back to an earlier state, and a pruned prefix
//! replaced by something else. Ed25519 because signatures are small (64
//! bytes), fast to make and check, deterministic (no nonce to get wrong), and
//! the key is 32 bytes in a file.
//!
//! Checkpoints are lines in `checkpoints.jsonl` in the audit directory:
//! `{"seq":N,"head":"<b64url>","ts":"…","key":"<key id>","sig":"<b64url>"}`;
//! the signature covers `vigil-audit-checkpoint:v1:{seq}:{head}:{ts}`.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::record::{self, Hash};

pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";
/// Copy of the signing public key kept beside the log for convenience;
/// verification with `--public-key` does not trust it.
pub const PUBLIC_KEY_FILE: &str = "signing-key.pub";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head: String,
    pub ts: String,
    pub key: String,
    pub sig: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: expected 64 hex digits (an Ed25519 key)", .0.display())]
    Format(PathBuf),
}

fn signed_message(seq: u64, head: &str, ts: &str) -> String {
    format!("vigil-audit-checkpoint:v1:{seq}:{head}:{ts}")
}

/// Short id of a public key: the first 8 bytes of its hex form.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&key.as_bytes()[..8])
}

pub fn sign(key: &SigningKey, seq: u64, head: &Hash, ts: String) -> Checkpoint {
    let head = record::hash_text(head);
    let signature = key.sign(signed_message(seq, &head, &ts).as_bytes());
    Checkpoint {
        seq,
        head,
        ts,
        key: key_id(&key.verifying_key()),
        sig: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
    }
}

impl Checkpoint {
    pub fn head_hash(&self) -> Option<Hash> {
        record::parse_hash(&self.head)
    }

    /// Checks the signature with `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.sig)
            .map_err(|_| "signature is not base64url".to_owned())?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| "signature has the wrong length".to_owned())?;
        key.verify(
            signed_message(self.seq, &self.head, &self.ts).as_bytes(),
            &signature,
        )
        .map_err(|_| format!("signature does not verify with key {}", key_id(key)))
    }
}

/// Appends checkpoints and syncs them.
pub struct CheckpointWriter {
    file: File,
    key: SigningKey,
    pub last_seq: u64,
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of Debug output.
        f.debug_struct("CheckpointWriter")
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl CheckpointWriter {
    pub fn open(dir: &Path, key: SigningKey) -> std::io::Result<CheckpointWriter> {
        let path = dir.join(CHECKPOINT_FILE);
        let last_seq = read_checkpoints(&path)
            .ok()
            .and_then(|all| all.last().map(|c| c.seq))
            .unwrap_or(0);
        let file = super::files::open_append(&path)?;
        let public = hex::encode(key.verifying_key().as_bytes());
        super::files::write_whole(&dir.join(PUBLIC_KEY_FILE), format!("{public}\n").as_bytes())?;
        Ok(CheckpointWriter {
            file,
            key,
            last_seq,
        })
    }

    pub fn write(&mut self, seq: u64, head: &Hash) -> std::io::Result<()> {
        if seq == 0 || seq == self.last_seq {
            return Ok(());
        }
        let checkpoint = sign(&self.key, seq, head, record::now_rfc3339());
        let mut line = serde_json::to_vec(&checkpoint).expect("a checkpoint always serializes");
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.last_seq = seq;
        Ok(())
    }
}

/// Every checkpoint in the file; a malformed line is an error naming it.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut checkpoints = Vec::new();
    let mut offset = 0u64;
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let checkpoint: Checkpoint = serde_json::from_slice(&line).map_err(|e| {
            format!(
                "{} line {} (offset {offset}): not a checkpoint: {e}",
                path.display(),
                index + 1
            )
        })?;
        offset += line.len() as u64 + 1;
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}

/// Reads a 32-byte Ed25519 key written as 64 hex digits.
fn read_key_bytes(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| KeyFileError::Format(path.to_owned()))?;
    Ok(bytes)
}

/// Loads the signing key, creating one (and `<name>.pub` beside it) the
/// first time.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    if !path.exists() {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let key = SigningKey::from_bytes(&rand::random());
        crate::keyfile::write_private(path, hex::encode(key.to_bytes()).as_bytes()).map_err(io)?;
        let public = path.with_extension("pub");
        std::fs::write(
            &public,
            format!("{}\n", hex::encode(key.verifying_key().as_bytes())),
        )
        .map_err(io)?;
    }
    Ok(SigningKey::from_bytes(&read_key_bytes(path)?))
}

/// Loads a 32-byte secret (the HMAC key), creating it the first time.
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], KeyFileError> {
    if !path.exists() {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        crate::keyfile::write_private(path, hex::encode(rand::random::<[u8; 32]>()).as_bytes())
            .map_err(io)?;
    }
    read_key_bytes(path)
}

/// A public key written as 64 hex digits (as `audit-signing.pub` holds
/// it, and as a witness registers it).
pub fn parse_public_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut bytes)
        .map_err(|_| "not 64 hex digits".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_owned())
}

pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    VerifyingKey::from_bytes(&read_key_bytes(path)?)
        .map_err(|_| KeyFileError::Format(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let checkpoint = sign(&key, 42, &[1; 32], "2026-11-27T00:00:00.000Z".into());
        checkpoint.verify(&key.verifying_key()).unwrap();
        let mut moved = checkpoint.clone();
        moved.seq = 41;
        assert!(moved.verify(&key.verifying_key()).is_err());
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(checkpoint.verify(&other.verifying_key()).is_err());
    }
}
