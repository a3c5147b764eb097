//! Authentication refusals cost little: past a few per peer, they are
//! counted rather than recorded one by one, and the count is recorded when
//! the peer's window closes ("N further refusals from PEER in 10 s"). An
//! unauthenticated flood cannot fill the disk and so fail vigil closed for
//! everyone; every decision (and the first refusals of each peer) is still
//! recorded in full.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    audit::{kind, Record},
    listen::Peer,
};

/// Refusals recorded one by one per peer and window.
const RECORDED_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(10);
/// Peers tracked at once; past it, new peers share one window.
const MAX_PEERS: usize = 4096;

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u32,
    suppressed: u64,
}

/// Per-peer refusal windows. Cloning is not needed: it lives in the `Core`.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

/// What to do with one refusal.
pub enum Refusal {
    /// Record it in full.
    Record,
    /// Count it; its window's total is recorded later.
    Count,
}

/// The peer a refusal is charged to: an address's IP, or a local uid.
pub fn peer_key(peer: Option<Peer>) -> String {
    match peer {
        Some(Peer::Tcp(Some(addr))) => addr.ip().to_string(),
        Some(Peer::Unix(Some(cred))) => format!("uid {}", cred.uid),
        _ => "an unknown peer".to_owned(),
    }
}

impl RefusalLimiter {
    pub fn admit(&self, peer: &str) -> Refusal {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = if windows.len() >= MAX_PEERS && !windows.contains_key(peer) {
            "other peers"
        } else {
            peer
        };
        let window = windows.entry(key.to_owned()).or_insert(Window {
            started: Instant::now(),
            recorded: 0,
            suppressed: 0,
        });
        if window.recorded < RECORDED_PER_WINDOW {
            window.recorded += 1;
            Refusal::Record
        } else {
            window.suppressed += 1;
            Refusal::Count
        }
    }

    /// The aggregate records of windows that have closed (all of them when
    /// `everything`, at shutdown); those windows are forgotten.
    pub fn take_closed(&self, everything: bool) -> Vec<Record> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut records = Vec::new();
        windows.retain(|peer, window| {
            let closed = everything || window.started.elapsed() >= WINDOW;
            if closed && window.suppressed > 0 {
                records.push(aggregate(peer, window));
            }
            !closed
        });
        records
    }
}

fn aggregate(peer: &str, window: &Window) -> Record {
    let mut record = Record::new(kind::AUTHN_FAILURE);
    record.allowed = Some(false);
    record.reason = Some(format!(
        "{} further authentication refusals from {peer} in {:.0?}, counted rather than recorded one by one",
        window.suppressed,
        window.started.elapsed().min(WINDOW)
    ));
    record.detail = Some(
        serde_json::json!({
            "peer": peer,
            "aggregated": window.suppressed,
            "recorded_individually": window.recorded,
        })
        .into(),
    );
    record
}
