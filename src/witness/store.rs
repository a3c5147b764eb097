//! The witness store in PostgreSQL: its schema and the transactions that
//! append to it.
//!
//! Schema version 1 (docs/witness.md):
//! - `vigil_chains`: one row per chain (a sidecar's audit directory): its
//!   registered public key, the stored head, what the shipper last saw
//!   locally (for lag), and `stopped` once a fork was found.
//! - `vigil_records`: the exact lines, partitioned by month of `ts`.
//! - `vigil_checkpoints`: signed checkpoints, exact lines.
//! - `vigil_forks`: every refused rewrite, never overwritten.
//! - `vigil_decisions`: a view, one row per decision, for auditors.

use std::collections::HashSet;

use tokio_postgres::{Client, NoTls};

/// The schema version this build creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

const SCHEMA_V1: &str = r#"
CREATE TABLE vigil_chains (
    chain_id        text PRIMARY KEY,
    public_key      text NOT NULL,
    host            text NOT NULL DEFAULT '',
    audit_dir       text NOT NULL DEFAULT '',
    registered_at   timestamptz NOT NULL DEFAULT now(),
    head_seq        bigint NOT NULL DEFAULT 0,
    head_hash       text NOT NULL DEFAULT '',
    head_ts         timestamptz,
    local_head_seq  bigint NOT NULL DEFAULT 0,
    reported_at     timestamptz,
    stopped         text
);
CREATE TABLE vigil_records (
    chain_id  text NOT NULL,
    seq       bigint NOT NULL,
    ts        timestamptz NOT NULL,
    kind      text NOT NULL,
    hash      text NOT NULL,
    prev      text NOT NULL,
    line      text NOT NULL,
    PRIMARY KEY (chain_id, seq, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE vigil_checkpoints (
    chain_id  text NOT NULL,
    seq       bigint NOT NULL,
    head      text NOT NULL,
    line      text NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
CREATE TABLE vigil_forks (
    id            bigserial PRIMARY KEY,
    chain_id      text NOT NULL,
    seq           bigint NOT NULL,
    stored_hash   text,
    offered_hash  text,
    what          text NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW vigil_decisions AS
SELECT r.ts                                   AS time,
       r.chain_id                             AS chain,
       r.seq                                  AS seq,
       (r.line::jsonb) ->> 'sub'              AS subject,
       (r.line::jsonb) ->> 'obj'              AS object,
       (r.line::jsonb) ->> 'act'              AS action,
       ((r.line::jsonb) ->> 'allowed')::bool  AS allowed,
       (r.line::jsonb) ->> 'reason'           AS reason,
       (r.line::jsonb) ->> 'pv'               AS policy_version
FROM vigil_records r
WHERE r.kind = 'decision';
"#;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness store: {0}")]
    Db(String),
    #[error(
        "witness store schema version {found} is newer than this vigil reads ({SCHEMA_VERSION})"
    )]
    NewerSchema { found: i32 },
    #[error("chain {chain} is registered with another public key: a different signer, refused")]
    OtherKey { chain: String },
    #[error("chain {chain} is stopped at the witness: {reason}")]
    Stopped { chain: String, reason: String },
    #[error("fork in chain {chain} at seq {seq}: {what}")]
    Fork {
        chain: String,
        seq: u64,
        what: String,
    },
    #[error("chain {0} is not in the witness store")]
    UnknownChain(String),
    /// The local log cannot be read for shipping (a broken line).
    #[error("the local audit log cannot be shipped: {0}")]
    Local(String),
}

/// A column the store returned that is not what vigil wrote (NULL, a
/// negative seq, another type): nothing vigil can trust, said in words,
/// never a panic.
fn unexpected(error: tokio_postgres::Error) -> WitnessError {
    WitnessError::Db(format!(
        "the witness store returned a value vigil did not write ({error})"
    ))
}

/// A seq column: present and not negative.
fn stored_seq(row: &tokio_postgres::Row, index: usize) -> Result<u64, WitnessError> {
    let value: Option<i64> = row.try_get(index).map_err(unexpected)?;
    value.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| {
        WitnessError::Db(
            "the witness store holds a NULL or negative seq for this chain, which vigil never \
             writes"
                .to_owned(),
        )
    })
}

/// A text column vigil always writes.
fn stored_text(row: &tokio_postgres::Row, index: usize) -> Result<String, WitnessError> {
    row.try_get::<_, Option<String>>(index)
        .map_err(unexpected)?
        .ok_or_else(|| {
            WitnessError::Db("the witness store holds a NULL where vigil wrote a value".to_owned())
        })
}

impl From<tokio_postgres::Error> for WitnessError {
    /// The server's own message when it sent one ("db error" alone says
    /// nothing an operator can act on).
    fn from(error: tokio_postgres::Error) -> Self {
        let message = match error.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => match std::error::Error::source(&error) {
                Some(source) => format!("{error}: {source}"),
                None => error.to_string(),
            },
        };
        WitnessError::Db(message)
    }
}

/// A local line as shipped: its chain fields and the exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedLine {
    pub seq: u64,
    /// RFC 3339, as the line says.
    pub ts: String,
    pub kind: String,
    /// base64url, as the line says.
    pub hash: String,
    pub prev: String,
    pub line: String,
}

/// A signed checkpoint line and what it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedCheckpoint {
    pub seq: u64,
    pub head: String,
    pub line: String,
}

/// What the store holds of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
    pub stopped: Option<String>,
}

/// A connection to the witness store.
pub struct Store {
    client: Client,
    /// Months whose partition exists (created on first use).
    partitions: HashSet<String>,
}

impl Store {
    /// Connects to `url` (`postgres://user@host:port/db` or a key=value
    /// string) and brings the schema to this build's version.
    pub async fn connect(url: &str) -> Result<Store, WitnessError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "witness store connection ended");
            }
        });
        // "already exists, skipping" notices are expected here, not news.
        client
            .batch_execute("SET client_min_messages = warning")
            .await?;
        let mut store = Store {
            client,
            partitions: HashSet::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates or upgrades the schema, once across every sidecar starting
    /// at the same moment (an advisory lock).
    async fn migrate(&mut self) -> Result<(), WitnessError> {
        let tx = self.client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7000001)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS vigil_schema (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let found: Option<i32> = tx
            .query_one("SELECT max(version) FROM vigil_schema", &[])
            .await?
            .get(0);
        match found.unwrap_or(0) {
            0 => {
                tx.batch_execute(SCHEMA_V1).await?;
                tx.execute(
                    "INSERT INTO vigil_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await?;
            }
            SCHEMA_VERSION => {}
            found => return Err(WitnessError::NewerSchema { found }),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Registers `chain` with its checkpoint key, or checks the key it was
    /// registered with: a chain keeps its signer.
    pub async fn register(
        &self,
        chain: &str,
        public_key: &str,
        host: &str,
        audit_dir: &str,
    ) -> Result<(), WitnessError> {
        self.client
            .execute(
                "INSERT INTO vigil_chains (chain_id, public_key, host, audit_dir)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (chain_id) DO NOTHING",
                &[&chain, &public_key, &host, &audit_dir],
            )
            .await?;
        let registered = stored_text(
            &self
                .client
                .query_one(
                    "SELECT public_key FROM vigil_chains WHERE chain_id = $1",
                    &[&chain],
                )
                .await?,
            0,
        )?;
        if registered != public_key {
            // Recorded where the fleet is watched, not only on the host: a
            // data directory replaced (a new signing key) under a chain id
            // that has history. The chain itself is not stopped, since its
            // first signer may still be shipping.
            self.client
                .execute(
                    "INSERT INTO vigil_forks (chain_id, seq, stored_hash, offered_hash, what)
                     VALUES ($1, 0, $2, $3, $4)",
                    &[
                        &chain,
                        &registered,
                        &public_key,
                        &format!(
                            "a sidecar on {host} ({audit_dir}) asked to continue this chain with \
                             another signing key (its data directory replaced?); refused"
                        ),
                    ],
                )
                .await?;
            return Err(WitnessError::OtherKey {
                chain: chain.to_owned(),
            });
        }
        Ok(())
    }

    pub async fn head(&self, chain: &str) -> Result<ChainHead, WitnessError> {
        let row = self
            .client
            .query_opt(
                "SELECT head_seq, head_hash, stopped FROM vigil_chains WHERE chain_id = $1",
                &[&chain],
            )
            .await?
            .ok_or_else(|| WitnessError::UnknownChain(chain.to_owned()))?;
        Ok(ChainHead {
            seq: stored_seq(&row, 0)?,
            hash: stored_text(&row, 1)?,
            stopped: row.try_get(2).map_err(unexpected)?,
        })
    }

    /// The stored hash of `seq`, if the store holds it.
    pub async fn stored_hash(&self, chain: &str, seq: u64) -> Result<Option<String>, WitnessError> {
        Ok(self
            .client
            .query_opt(
                "SELECT hash FROM vigil_records WHERE chain_id = $1 AND seq = $2",
                &[&chain, &(seq as i64)],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// Appends `lines` (consecutive, oldest first) to `chain`. Lines the
    /// store already holds are accepted again only byte for byte; the
    /// first that does not continue the stored chain is a fork: recorded,
    /// the chain stopped, nothing overwritten.
    pub async fn append(
        &mut self,
        chain: &str,
        lines: &[ShippedLine],
        local_head: u64,
    ) -> Result<u64, WitnessError> {
        for line in lines {
            self.ensure_partition(&line.ts).await?;
        }
        let tx = self.client.transaction().await?;
        let row = tx
            .query_one(
                "SELECT head_seq, head_hash, stopped FROM vigil_chains
                 WHERE chain_id = $1 FOR UPDATE",
                &[&chain],
            )
            .await?;
        let (mut head, mut head_hash): (u64, String) =
            (stored_seq(&row, 0)?, stored_text(&row, 1)?);
        if let Some(reason) = row.try_get::<_, Option<String>>(2).map_err(unexpected)? {
            return Err(WitnessError::Stopped {
                chain: chain.to_owned(),
                reason,
            });
        }
        let mut fresh: Vec<&ShippedLine> = Vec::with_capacity(lines.len());
        let mut fork = None;
        if head > local_head {
            // A store cannot hold more of a chain than its log has written:
            // it lies, or the log was cut behind its back.
            fork = Some((
                head,
                Some(head_hash.clone()),
                String::new(),
                "the witness claims a head past the log's own",
            ));
        }
        // With a fork already found, nothing is read.
        let offered = if fork.is_none() { lines } else { &[] };
        for line in offered {
            if line.seq <= head {
                let stored: Option<String> = tx
                    .query_opt(
                        "SELECT hash FROM vigil_records WHERE chain_id = $1 AND seq = $2",
                        &[&chain, &(line.seq as i64)],
                    )
                    .await?
                    .map(|row| row.get(0));
                match stored {
                    Some(stored) if stored == line.hash => continue,
                    stored => {
                        fork = Some((
                            line.seq,
                            stored,
                            line.hash.clone(),
                            "a seq already stored arrived with different bytes: the history was rewritten",
                        ));
                        break;
                    }
                }
            }
            // The first record a store sees may follow a prefix pruned
            // before shipping began.
            let continues = line.seq == head + 1 && (head == 0 || line.prev == head_hash);
            if !continues {
                let what = if line.seq != head + 1 {
                    "a gap: the record does not follow the stored head"
                } else {
                    "its prev is not the stored hash of the record before it"
                };
                fork = Some((line.seq, Some(head_hash.clone()), line.prev.clone(), what));
                break;
            }
            head = line.seq;
            head_hash = line.hash.clone();
            fresh.push(line);
        }
        if let Some((seq, stored, offered, what)) = fork {
            drop(tx);
            self.record_fork(chain, seq, stored.as_deref(), Some(&offered), what)
                .await?;
            return Err(WitnessError::Fork {
                chain: chain.to_owned(),
                seq,
                what: what.to_owned(),
            });
        }
        // One COPY per batch: the rows as text, escaped once, which costs
        // the sidecar far less than binding seven parameters a row.
        if !fresh.is_empty() {
            let mut rows = Vec::with_capacity(fresh.iter().map(|l| l.line.len() + 160).sum());
            for line in &fresh {
                for (i, field) in [
                    chain,
                    &line.seq.to_string(),
                    &line.ts,
                    &line.kind,
                    &line.hash,
                    &line.prev,
                    &line.line,
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        rows.push(b'\t');
                    }
                    copy_escape(field, &mut rows);
                }
                rows.push(b'\n');
            }
            let sink = tx
                .copy_in(
                    "COPY vigil_records (chain_id, seq, ts, kind, hash, prev, line) FROM STDIN",
                )
                .await?;
            futures_util::pin_mut!(sink);
            futures_util::SinkExt::send(&mut sink, bytes::Bytes::from(rows)).await?;
            sink.finish().await?;
        }
        if let Some(last) = fresh.last() {
            tx.execute(
                "UPDATE vigil_chains SET head_seq = $2, head_hash = $3,
                     head_ts = $4::text::timestamptz, local_head_seq = $5, reported_at = now()
                 WHERE chain_id = $1",
                &[
                    &chain,
                    &(last.seq as i64),
                    &last.hash,
                    &last.ts,
                    &(local_head as i64),
                ],
            )
            .await?;
        } else {
            tx.execute(
                "UPDATE vigil_chains SET local_head_seq = $2, reported_at = now() WHERE chain_id = $1",
                &[&chain, &(local_head as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(head)
    }

    /// Stores checkpoints whose records the store holds; one that names a
    /// different hash than the stored record is a fork.
    pub async fn add_checkpoints(
        &self,
        chain: &str,
        checkpoints: &[ShippedCheckpoint],
    ) -> Result<(), WitnessError> {
        for checkpoint in checkpoints {
            let stored = self.stored_hash(chain, checkpoint.seq).await?;
            match stored {
                Some(hash) if hash == checkpoint.head => {}
                Some(hash) => {
                    let what = "a signed checkpoint contradicts the stored record";
                    self.record_fork(
                        chain,
                        checkpoint.seq,
                        Some(&hash),
                        Some(&checkpoint.head),
                        what,
                    )
                    .await?;
                    return Err(WitnessError::Fork {
                        chain: chain.to_owned(),
                        seq: checkpoint.seq,
                        what: what.to_owned(),
                    });
                }
                // Pruned before shipping began, or not shipped yet.
                None => continue,
            }
            let existing: Option<String> = self
                .client
                .query_opt(
                    "SELECT head FROM vigil_checkpoints WHERE chain_id = $1 AND seq = $2",
                    &[&chain, &(checkpoint.seq as i64)],
                )
                .await?
                .map(|row| row.get(0));
            if existing.is_none() {
                self.client
                    .execute(
                        "INSERT INTO vigil_checkpoints (chain_id, seq, head, line)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[
                            &chain,
                            &(checkpoint.seq as i64),
                            &checkpoint.head,
                            &checkpoint.line,
                        ],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn record_fork(
        &self,
        chain: &str,
        seq: u64,
        stored: Option<&str>,
        offered: Option<&str>,
        what: &str,
    ) -> Result<(), WitnessError> {
        self.client
            .execute(
                "INSERT INTO vigil_forks (chain_id, seq, stored_hash, offered_hash, what)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&chain, &(seq as i64), &stored, &offered, &what],
            )
            .await?;
        self.client
            .execute(
                "UPDATE vigil_chains SET stopped = $2 WHERE chain_id = $1",
                &[&chain, &format!("fork at seq {seq}: {what}")],
            )
            .await?;
        Ok(())
    }

    /// The month partition `ts` (RFC 3339) falls in, created if missing.
    async fn ensure_partition(&mut self, ts: &str) -> Result<(), WitnessError> {
        let Some(month) = ts.get(..7).filter(|m| m.as_bytes().get(4) == Some(&b'-')) else {
            return Ok(());
        };
        if self.partitions.contains(month) {
            return Ok(());
        }
        let (year, mon): (i32, u32) = match (month[..4].parse(), month[5..7].parse()) {
            (Ok(y), Ok(m)) if (1..=12).contains(&m) => (y, m),
            _ => return Ok(()),
        };
        let (next_year, next_mon) = if mon == 12 {
            (year + 1, 1)
        } else {
            (year, mon + 1)
        };
        let name = format!("vigil_records_{year:04}_{mon:02}");
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF vigil_records
             FOR VALUES FROM ('{year:04}-{mon:02}-01') TO ('{next_year:04}-{next_mon:02}-01')"
        );
        // Two shippers creating the same month race; the loser's error is
        // harmless once the table exists.
        if let Err(e) = self.client.batch_execute(&sql).await {
            let exists = self
                .client
                .query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&name])
                .await?
                .is_some();
            if !exists {
                return Err(e.into());
            }
        }
        self.partitions.insert(month.to_owned());
        Ok(())
    }

    /// Every stored line of `chain` with its seq and hash, in seq order
    /// (read into memory: a verification, not a decision path).
    pub async fn lines(&self, chain: &str) -> Result<Vec<(u64, String, String)>, WitnessError> {
        self.client
            .query(
                "SELECT seq, hash, line FROM vigil_records WHERE chain_id = $1 ORDER BY seq",
                &[&chain],
            )
            .await?
            .iter()
            .map(|row| {
                Ok((
                    stored_seq(row, 0)?,
                    stored_text(row, 1)?,
                    stored_text(row, 2)?,
                ))
            })
            .collect()
    }

    pub async fn checkpoints(&self, chain: &str) -> Result<Vec<String>, WitnessError> {
        Ok(self
            .client
            .query(
                "SELECT line FROM vigil_checkpoints WHERE chain_id = $1 ORDER BY seq",
                &[&chain],
            )
            .await?
            .into_iter()
            .map(|row| row.get(0))
            .collect())
    }

    pub async fn public_key(&self, chain: &str) -> Result<String, WitnessError> {
        self.client
            .query_opt(
                "SELECT public_key FROM vigil_chains WHERE chain_id = $1",
                &[&chain],
            )
            .await?
            .map(|row| row.get(0))
            .ok_or_else(|| WitnessError::UnknownChain(chain.to_owned()))
    }

    /// One row per chain, for `vigil audit fleet`.
    pub async fn fleet(&self) -> Result<Vec<FleetRow>, WitnessError> {
        let rows = self
            .client
            .query(
                "SELECT c.chain_id, c.head_seq, c.head_ts::text, c.local_head_seq,
                        extract(epoch FROM now() - c.reported_at)::float8,
                        (SELECT max(k.seq) FROM vigil_checkpoints k WHERE k.chain_id = c.chain_id),
                        (SELECT count(*) FROM vigil_forks f WHERE f.chain_id = c.chain_id),
                        (SELECT count(*) FROM vigil_records r WHERE r.chain_id = c.chain_id),
                        (SELECT min(r.seq) FROM vigil_records r WHERE r.chain_id = c.chain_id),
                        c.stopped
                 FROM vigil_chains c ORDER BY c.chain_id",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| FleetRow {
                chain: row.get(0),
                head_seq: row.get::<_, i64>(1) as u64,
                head_time: row.get(2),
                local_head_seq: row.get::<_, i64>(3) as u64,
                reported_ago_secs: row.get(4),
                last_checkpoint_seq: row.get::<_, Option<i64>>(5).map(|s| s as u64),
                forks: row.get::<_, i64>(6) as u64,
                stored: row.get::<_, i64>(7) as u64,
                first_seq: row.get::<_, Option<i64>>(8).map(|s| s as u64),
                stopped: row.get(9),
            })
            .collect())
    }
}

/// A field in COPY's text format: backslash, tab, newline and carriage
/// return escaped.
fn copy_escape(field: &str, out: &mut Vec<u8>) {
    for &byte in field.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

/// A chain as `vigil audit fleet` lists it.
#[derive(Debug, Clone)]
pub struct FleetRow {
    pub chain: String,
    pub head_seq: u64,
    pub head_time: Option<String>,
    /// The sidecar's own head when it last reported: the lag's other end.
    pub local_head_seq: u64,
    pub reported_ago_secs: Option<f64>,
    pub last_checkpoint_seq: Option<u64>,
    pub forks: u64,
    pub stored: u64,
    pub first_seq: Option<u64>,
    pub stopped: Option<String>,
}

impl FleetRow {
    /// Records missing between the first stored and the head.
    pub fn gaps(&self) -> u64 {
        match self.first_seq {
            Some(first) => (self.head_seq + 1 - first).saturating_sub(self.stored),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_escape;

    #[test]
    fn copy_fields_keep_their_bytes() {
        let mut out = Vec::new();
        copy_escape(r#"{"reason":"a\"b\\c","x":"tab	here"}"#, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"reason":"a\\"b\\\\c","x":"tab\there"}"#
        );
    }
}
