//! Limits shared by every sidecar of a service: the GCRA states live in
//! Redis, and each check is one Lua script, so N sidecars spend one budget
//! atomically and a check costs one round trip whatever it covers.
//!
//! The connection is redis-rs's multiplexed `ConnectionManager` (calls on
//! many streams share it, pipelined). While Redis does not answer, checks
//! do not try it: a prober pings it every half second and the limiter
//! answers from its local fallback until a ping succeeds.

use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// One atomic check over any number of buckets. State per key: the
/// theoretical arrival time (µs, Redis's clock, so sidecars agree on time).
/// ARGV[1] is the mode: `all` (every key takes its n, or none takes
/// anything) or `each` (each key takes what it can, up to its n). Then per
/// key: emission interval (µs), burst, n. Returns what each key granted and
/// the wait (µs) until what was refused could be taken.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local all = ARGV[1] == 'all'
local k = #KEYS
local tat, avail = {}, {}
local short = false
for i = 1, k do
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local n = tonumber(ARGV[3 * i + 1])
  local at = tonumber(redis.call('GET', KEYS[i]) or now)
  if at < now then at = now end
  local a = math.floor((now + interval * burst - at) / interval)
  if a < 0 then a = 0 end
  tat[i] = at
  avail[i] = a
  if a < n then short = true end
end
local out = {}
local wait = 0
for i = 1, k do
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local n = tonumber(ARGV[3 * i + 1])
  local g = math.min(avail[i], n)
  if all and short then g = 0 end
  if g > 0 then
    local at = tat[i] + g * interval
    redis.call('SET', KEYS[i], string.format('%.0f', at), 'PX', math.ceil((at - now) / 1000) + 1)
  end
  if g < n then
    local need = n
    if not all then need = g + 1 end
    local w = tat[i] + need * interval - interval * burst - now
    if w > wait then wait = w end
  end
  out[i] = g
end
out[k + 1] = wait
return out
"#;

/// What one bucket of a shared check asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub key: String,
    pub interval_us: u64,
    pub burst: u32,
    pub n: u32,
}

/// Whether every ask must be met or each takes what it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    All,
    Each,
}

/// Granted per ask, and the wait until what was refused frees up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub granted: Vec<u32>,
    pub retry_after: Duration,
}

/// Why the shared store did not answer (the caller falls back).
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("the limits store is unreachable")]
    Down,
    #[error("the limits store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the limits store failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the limits store answered {0} values for {1} buckets")]
    Malformed(usize, usize),
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The Redis connection and its state.
pub struct SharedStore {
    /// The URL without its password, for logs and health.
    pub shown: String,
    client: redis::Client,
    connection: ArcSwapOption<ConnectionManager>,
    /// [`UNKNOWN`] until the first connection attempt, then [`UP`] or
    /// [`DOWN`].
    state: AtomicU8,
    timeout: Duration,
    script: redis::Script,
    /// Prefix of every key: sidecars of one service share it, other
    /// services use their own.
    pub prefix: String,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("url", &self.shown)
            .field("up", &self.is_up())
            .finish()
    }
}

/// `redis://user:secret@host` shown as `redis://user:***@host`.
pub fn without_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            // `user:password@` keeps the user; a lone `secret@` may be a
            // password-less user or a token: hidden whole.
            let user = match base[scheme + 3..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}{user}{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        // `unix:///run/redis.sock?db=1&pass=…` (redis-rs's socket form).
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if ["pass", "password"]
                        .iter()
                        .any(|secret| key.eq_ignore_ascii_case(secret)) =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

impl SharedStore {
    /// Checks the URL; connecting happens in [`SharedStore::keep_connected`].
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<SharedStore, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("{}: not a Redis URL: {e}", without_password(url)))?;
        Ok(SharedStore {
            shown: without_password(url),
            client,
            connection: ArcSwapOption::empty(),
            state: AtomicU8::new(UNKNOWN),
            timeout,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
        })
    }

    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Records the store's state; a change is logged once.
    fn mark(&self, up: bool, why: Option<&dyn std::fmt::Display>) {
        let state = if up { UP } else { DOWN };
        if self.state.swap(state, Ordering::Relaxed) != state {
            match why {
                None => {
                    tracing::info!(store = %self.shown, "limits store reachable: limits are shared again")
                }
                Some(why) => {
                    tracing::warn!(store = %self.shown, error = %why, "limits store unreachable: call rates fall back to local budgets, reveal quotas fail closed")
                }
            }
        }
    }

    /// Connects, then pings every half second, for as long as the task
    /// runs (the server aborts it at shutdown).
    pub async fn keep_connected(self: Arc<Self>) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        loop {
            if self.connection.load().is_none() {
                match self
                    .client
                    .get_connection_manager_with_config(config.clone())
                    .await
                {
                    Ok(manager) => {
                        self.connection.store(Some(Arc::new(manager)));
                    }
                    Err(e) => self.mark(false, Some(&e)),
                }
            }
            // Pinged while up too: a quiet sidecar learns of an outage
            // before a call has to.
            if let Some(connection) = self.connection.load_full() {
                let mut connection = (*connection).clone();
                let ping = tokio::time::timeout(
                    self.timeout.max(Duration::from_millis(200)),
                    redis::cmd("PING").query_async::<String>(&mut connection),
                )
                .await;
                match ping {
                    Ok(Ok(_)) => self.mark(true, None),
                    Ok(Err(e)) => self.mark(false, Some(&e)),
                    Err(_) => self.mark(false, Some(&"no answer to PING")),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One round trip: the script over `asks`.
    pub async fn take(&self, asks: &[Ask], mode: Mode) -> Result<Granted, SharedError> {
        if !self.is_up() {
            return Err(SharedError::Down);
        }
        let Some(connection) = self.connection.load_full() else {
            return Err(SharedError::Down);
        };
        let mut connection = (*connection).clone();
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(match mode {
            Mode::All => "all",
            Mode::Each => "each",
        });
        for ask in asks {
            invocation
                .key(&ask.key)
                .arg(ask.interval_us.max(1))
                .arg(ask.burst)
                .arg(ask.n);
        }
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        let values = match answer {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                self.mark(false, Some(&e));
                return Err(e.into());
            }
            Err(_) => {
                self.mark(false, Some(&"no answer in time"));
                return Err(SharedError::Timeout(self.timeout));
            }
        };
        if values.len() != asks.len() + 1 {
            return Err(SharedError::Malformed(values.len(), asks.len()));
        }
        let wait = values[asks.len()].max(0) as u64;
        Ok(Granted {
            granted: values[..asks.len()]
                .iter()
                .map(|&g| g.clamp(0, u32::MAX as i64) as u32)
                .collect(),
            retry_after: Duration::from_micros(wait),
        })
    }

    /// The round trip alone (PING), for the benchmark's floor.
    pub async fn ping(&self) -> Result<(), SharedError> {
        let Some(connection) = self.connection.load_full() else {
            return Err(SharedError::Down);
        };
        let mut connection = (*connection).clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            without_password("redis://app:s3cret@10.0.0.1:6379/0"),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            without_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        // Every form redis-rs accepts a credential in.
        for (url, shown) in [
            ("redis://:s3cret@h:6379", "redis://:***@h:6379"),
            ("rediss://s3cret@h", "rediss://***@h"),
            (
                "unix:///run/redis.sock?db=1&pass=s3cret",
                "unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "redis+unix:///run/redis.sock?user=app&PASSWORD=s3cret",
                "redis+unix:///run/redis.sock?user=app&PASSWORD=***",
            ),
        ] {
            assert_eq!(without_password(url), shown);
            assert!(!without_password(url).contains("s3cret"));
        }
    }
}
