//! Prometheus metrics: what an SRE graphs and alerts on.
//!
//! One [`Metrics`] per server, passed down to what it counts (no global
//! registry: tests run many servers in one process and each must count
//! only its own calls). Counters and histograms are prometheus-client's,
//! atomics behind an `Arc`; the hot paths hold pre-resolved children
//! (`Authorize` × `allow`), never a label lookup per call.
//!
//! Privacy and cardinality: no subject, object, domain, attribute or value
//! is ever a label. Labels are closed sets (RPC names, results, failure
//! kinds) or operator-defined names from the policy files (classification
//! labels, treatments).

use std::{
    sync::{atomic::AtomicU64, Mutex},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

/// The RPCs whose calls are counted and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Authorize,
    AuthorizeBatch,
    Mask,
    Unmask,
    /// Envoy's ext_authz `Authorization/Check`.
    Check,
    /// A gateway subrequest on `/v1/check` (nginx, Traefik).
    HttpCheck,
}

impl Rpc {
    const ALL: [Rpc; 6] = [
        Rpc::Authorize,
        Rpc::AuthorizeBatch,
        Rpc::Mask,
        Rpc::Unmask,
        Rpc::Check,
        Rpc::HttpCheck,
    ];

    fn name(self) -> &'static str {
        match self {
            Rpc::Authorize => "Authorize",
            Rpc::AuthorizeBatch => "AuthorizeBatch",
            Rpc::Mask => "Mask",
            Rpc::Unmask => "Unmask",
            Rpc::Check => "Check",
            Rpc::HttpCheck => "/v1/check",
        }
    }
}

/// How a call ended, as counted in `vigil_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// Answered with a gRPC error (bad input, unauthenticated, audit
    /// outage…): no decision was given.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Allow, Outcome::Deny, Outcome::Error];

    fn name(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }

    pub fn of(allowed: bool) -> Outcome {
        if allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    rpc: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FieldLabels {
    label: String,
    treatment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// What the audit writer counts; cheap to clone into its sync thread.
/// `Default` gives metrics no registry reads (a log opened outside a
/// server, by `vigil mask` or a test).
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    pub records: Counter,
    pub write_failures: Counter,
    /// Records per group commit: 1 … 4096.
    batch_records: Histogram,
    /// fdatasync latency: 50 µs … ~1.6 s.
    fsync_seconds: Histogram,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        AuditMetrics {
            records: Counter::default(),
            write_failures: Counter::default(),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            fsync_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 16)),
        }
    }
}

impl AuditMetrics {
    pub fn observe_fsync(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    /// One write of `records` records (a group commit, or one call's).
    pub fn observe_write(&self, records: usize) {
        self.batch_records.observe(records as f64);
        self.records.inc_by(records as u64);
    }
}

/// What a scrape reads from the server's state rather than counting as
/// it happens.
#[derive(Debug, Clone, Default)]
pub struct ScrapeState {
    pub audit: AuditState,
    /// The live policy set's version.
    pub policy_version: String,
    /// Divergences the shadow policy has counted since start.
    pub shadow_divergences: u64,
    /// Shipping to the audit witness, when on.
    pub witness: Option<WitnessState>,
    /// Whether the shared limits store answers (`None`: limits are kept
    /// in process).
    pub limits_store_up: Option<bool>,
}

/// The audit witness shipper's state at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct WitnessState {
    pub lag_records: u64,
    pub lag_seconds: f64,
    pub connected: bool,
    /// A fork stopped shipping.
    pub stopped: bool,
}

/// The audit log's state at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditState {
    pub writable: bool,
    pub segments: u64,
    pub bytes: u64,
    /// Seconds since the newest signed checkpoint (`None`: none yet).
    pub checkpoint_age: Option<f64>,
}

/// Every metric of one server, registered under the `vigil_` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `[rpc][outcome]`, in [`Rpc::ALL`] × [`Outcome::ALL`] order.
    decisions: Vec<[Counter; 3]>,
    /// Per RPC, in [`Rpc::ALL`] order.
    latency: Vec<Histogram>,
    mask_fields: Family<FieldLabels, Counter>,
    auth_failures: Family<KindLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    policy_info: Family<VersionLabels, Gauge>,
    /// The version `policy_info` currently shows, to retire it on reload.
    shown_version: Mutex<String>,
    shadow_divergences: Counter,
    pub audit: AuditMetrics,
    audit_writable: Gauge,
    audit_segments: Gauge,
    audit_bytes: Gauge,
    checkpoint_age: Gauge<f64, AtomicU64>,
    witness_lag_records: Gauge,
    witness_lag_seconds: Gauge<f64, AtomicU64>,
    witness_connected: Gauge,
    witness_stopped: Gauge,
    /// `[via]`: local, shared, fallback.
    limit_checks: [Counter; 3],
    limit_exceeded: Family<LimitLabels, Counter>,
    quota_weakened: Family<LimitLabels, Counter>,
    limits_store_up: Gauge,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ViaLabels {
    via: &'static str,
}

/// Where limit checks are answered, in `limit_checks` order.
pub const LIMIT_VIAS: [&str; 3] = ["local", "shared", "fallback"];

impl Metrics {
    /// Registers everything, the audit writer's own metrics (which it
    /// counts from its sync thread) among them.
    pub fn new(audit: AuditMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("vigil");

        let decision_family = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Calls answered, by RPC and result (allow, deny, or error: no decision given)",
            decision_family.clone(),
        );
        let decisions = Rpc::ALL
            .iter()
            .map(|rpc| {
                Outcome::ALL.map(|outcome| {
                    decision_family.get_or_create_owned(&DecisionLabels {
                        rpc: rpc.name(),
                        result: outcome.name(),
                    })
                })
            })
            .collect();

        let latency_family = Family::<RpcLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(25e-6, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a call's arrival in the handler to its answer, audit wait included",
            Unit::Seconds,
            latency_family.clone(),
        );
        let latency = Rpc::ALL
            .iter()
            .map(|rpc| latency_family.get_or_create_owned(&RpcLabels { rpc: rpc.name() }))
            .collect();

        let mask_fields = Family::<FieldLabels, Counter>::default();
        registry.register(
            "mask_fields",
            "Fields and spans treated by Mask, by classification label and treatment",
            mask_fields.clone(),
        );
        let auth_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused authentications, by kind (missing token, expired, bad signature…)",
            auth_failures.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads, by result (success, failure)",
            reloads.clone(),
        );
        for result in ["success", "failure"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        let policy_info = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "policy_info",
            "The loaded policy set: its content hash as `version`, value 1",
            policy_info.clone(),
        );
        let shadow_divergences = Counter::default();
        registry.register(
            "shadow_divergences",
            "Decisions and treatments where the shadow policy answered differently",
            shadow_divergences.clone(),
        );
        let limit_check_family = Family::<ViaLabels, Counter>::default();
        registry.register(
            "limit_checks",
            "Calls checked against limits.toml's rates, by where the budget was kept \
             (local, shared in Redis, or the local fallback while Redis is unreachable)",
            limit_check_family.clone(),
        );
        let limit_checks =
            LIMIT_VIAS.map(|via| limit_check_family.get_or_create_owned(&ViaLabels { via }));
        let limit_exceeded = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limit_exceeded",
            "Calls the policy allowed and a rate limit denied, by limit",
            limit_exceeded.clone(),
        );
        let quota_weakened = Family::<LimitLabels, Counter>::default();
        registry.register(
            "quota_weakened",
            "Values shown weaker than their grant because a reveal quota was spent, by quota",
            quota_weakened.clone(),
        );
        let limits_store_up = Gauge::default();
        registry.register(
            "limits_store_up",
            "1 while the shared limits store (Redis) answers; 0 while limits fall back",
            limits_store_up.clone(),
        );
        let witness_lag_records = Gauge::default();
        registry.register(
            "witness_lag_records",
            "Audit records written locally and not yet acknowledged by the witness (--ship-to)",
            witness_lag_records.clone(),
        );
        let witness_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "witness_lag_seconds",
            "Age of the oldest audit record not yet acknowledged by the witness",
            witness_lag_seconds.clone(),
        );
        let witness_connected = Gauge::default();
        registry.register(
            "witness_connected",
            "1 while the audit witness store is reachable",
            witness_connected.clone(),
        );
        let witness_stopped = Gauge::default();
        registry.register(
            "witness_stopped",
            "1 once the witness refused this chain (a fork): shipping stopped",
            witness_stopped.clone(),
        );

        registry.register(
            "audit_records",
            "Records appended to the audit log",
            audit.records.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit writes or syncs that failed (calls answered UNAVAILABLE or waiting)",
            audit.write_failures.clone(),
        );
        registry.register(
            "audit_batch_records",
            "Records per group commit (one write and one fdatasync)",
            audit.batch_records.clone(),
        );
        registry.register_with_unit(
            "audit_fsync_duration",
            "fdatasync latency of the audit log",
            Unit::Seconds,
            audit.fsync_seconds.clone(),
        );
        let audit_writable = Gauge::default();
        registry.register(
            "audit_writable",
            "1 while the audit log can be written (health SERVING), 0 during an outage",
            audit_writable.clone(),
        );
        let audit_segments = Gauge::default();
        registry.register(
            "audit_segments",
            "Segment files in the audit directory",
            audit_segments.clone(),
        );
        let audit_bytes = Gauge::default();
        registry.register_with_unit(
            "audit_size",
            "Bytes of the audit directory's segment files",
            Unit::Bytes,
            audit_bytes.clone(),
        );
        let checkpoint_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "audit_checkpoint_age",
            "Time since the newest signed checkpoint (-1: none yet)",
            Unit::Seconds,
            checkpoint_age.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        registry.register("build_info", "vigil's version, value 1", build.clone());
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);

        Metrics {
            registry,
            decisions,
            latency,
            mask_fields,
            auth_failures,
            reloads,
            policy_info,
            shown_version: Mutex::new(String::new()),
            shadow_divergences,
            witness_lag_records,
            witness_lag_seconds,
            witness_connected,
            witness_stopped,
            limit_checks,
            limit_exceeded,
            quota_weakened,
            limits_store_up,
            audit,
            audit_writable,
            audit_segments,
            audit_bytes,
            checkpoint_age,
        }
    }

    /// Counts one answered call and its latency since `started`.
    pub fn observe_call(&self, rpc: Rpc, outcome: Outcome, started: Instant) {
        let index = rpc as usize;
        self.decisions[index][outcome as usize].inc();
        self.latency[index].observe(started.elapsed().as_secs_f64());
    }

    /// Counts one decision of a batch (whose items are counted one by one).
    pub fn count_decision(&self, rpc: Rpc, outcome: Outcome) {
        self.decisions[rpc as usize][outcome as usize].inc();
    }

    /// A call's latency alone (its decisions counted one by one).
    pub fn observe_latency(&self, rpc: Rpc, started: Instant) {
        self.latency[rpc as usize].observe(started.elapsed().as_secs_f64());
    }

    /// Counts a Mask call's treated fields, one lookup per distinct
    /// (label, treatment) rather than per field.
    pub fn count_mask_fields<'a>(&self, fields: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut tally: Vec<((&str, &str), u64)> = Vec::new();
        for field in fields {
            match tally.iter_mut().find(|(seen, _)| *seen == field) {
                Some((_, count)) => *count += 1,
                None => tally.push((field, 1)),
            }
        }
        for ((label, treatment), count) in tally {
            self.mask_fields
                .get_or_create(&FieldLabels {
                    label: label.to_owned(),
                    treatment: treatment.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// One rate check, answered `via` (one of [`LIMIT_VIAS`]); `exceeded`
    /// names the limit that denied it.
    pub fn count_limit_check(&self, via: &str, exceeded: Option<&str>) {
        if let Some(i) = LIMIT_VIAS.iter().position(|v| *v == via) {
            self.limit_checks[i].inc();
        }
        if let Some(limit) = exceeded {
            self.limit_exceeded
                .get_or_create(&LimitLabels {
                    limit: limit.to_owned(),
                })
                .inc();
        }
    }

    /// Values a reveal quota weakened, per quota.
    pub fn count_quota_weakened<'a>(&self, spent: impl IntoIterator<Item = (&'a String, &'a u64)>) {
        for (quota, values) in spent {
            self.quota_weakened
                .get_or_create(&LimitLabels {
                    limit: quota.clone(),
                })
                .inc_by(*values);
        }
    }

    /// `kind` is the refusal's stable code (`AuthnError::code`), never its
    /// message, which may quote what the caller sent.
    pub fn count_auth_failure(&self, kind: &'static str) {
        self.auth_failures.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn count_reload(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Shows `version` as the loaded policy, retiring the one before.
    fn set_policy_version(&self, version: &str) {
        let mut shown = self
            .shown_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *shown == version {
            return;
        }
        self.policy_info.remove(&VersionLabels {
            version: shown.clone(),
        });
        self.policy_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
        *shown = version.to_owned();
    }

    /// The exposition text (Prometheus text format 0.0.4 compatible
    /// OpenMetrics), after reading the audit state it reports.
    pub fn render(&self, state: &ScrapeState) -> String {
        let audit = state.audit;
        self.set_policy_version(&state.policy_version);
        // The shadow counts its own divergences (GetPolicyStatus shows
        // them); the counter catches up to it.
        let counted = self.shadow_divergences.get();
        if state.shadow_divergences > counted {
            self.shadow_divergences
                .inc_by(state.shadow_divergences - counted);
        }
        self.audit_writable.set(i64::from(audit.writable));
        self.audit_segments.set(audit.segments as i64);
        self.audit_bytes.set(audit.bytes as i64);
        self.checkpoint_age
            .set(audit.checkpoint_age.unwrap_or(-1.0));
        if let Some(up) = state.limits_store_up {
            self.limits_store_up.set(i64::from(up));
        }
        if let Some(witness) = state.witness {
            self.witness_lag_records.set(witness.lag_records as i64);
            self.witness_lag_seconds.set(witness.lag_seconds);
            self.witness_connected.set(i64::from(witness.connected));
            self.witness_stopped.set(i64::from(witness.stopped));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Sum of `vigil_decisions_total` for one RPC, for tests and status.
    pub fn decisions(&self, rpc: Rpc) -> u64 {
        self.decisions[rpc as usize].iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn exposition_follows_prometheus_naming() {
        let metrics = Metrics::new(AuditMetrics::default());
        metrics.observe_call(Rpc::Authorize, Outcome::Allow, Instant::now());
        metrics.count_decision(Rpc::AuthorizeBatch, Outcome::Deny);
        metrics.count_mask_fields([("phone", "mask"), ("phone", "mask"), ("email", "clear")]);
        metrics.audit.observe_write(3);
        let mut state = ScrapeState {
            audit: AuditState {
                writable: true,
                segments: 2,
                bytes: 100,
                checkpoint_age: Some(1.5),
            },
            policy_version: "abc".into(),
            witness: Some(WitnessState {
                lag_records: 7,
                lag_seconds: 0.5,
                connected: true,
                stopped: false,
            }),
            shadow_divergences: 4,
            limits_store_up: Some(false),
        };
        metrics.count_limit_check("fallback", Some("r"));
        metrics.render(&state);
        state.policy_version = "def".into();
        let text = metrics.render(&state);
        for line in [
            "vigil_decisions_total{rpc=\"Authorize\",result=\"allow\"} 1",
            "vigil_decisions_total{rpc=\"AuthorizeBatch\",result=\"deny\"} 1",
            "vigil_decisions_total{rpc=\"Mask\",result=\"error\"} 0",
            "vigil_request_duration_seconds_count{rpc=\"Authorize\"} 1",
            "vigil_mask_fields_total{label=\"phone\",treatment=\"mask\"} 2",
            "vigil_mask_fields_total{label=\"email\",treatment=\"clear\"} 1",
            "vigil_policy_info{version=\"def\"} 1",
            "vigil_build_info{version=\"",
            "vigil_audit_records_total 3",
            "vigil_audit_batch_records_count 1",
            "vigil_audit_writable 1",
            "vigil_audit_segments 2",
            "vigil_audit_size_bytes 100",
            "vigil_audit_checkpoint_age_seconds 1.5",
            "vigil_policy_reloads_total{result=\"failure\"} 0",
            "vigil_shadow_divergences_total 4",
            "vigil_witness_lag_records 7",
            "vigil_witness_lag_seconds 0.5",
            "vigil_witness_connected 1",
            "vigil_witness_stopped 0",
            "vigil_limit_checks_total{via=\"fallback\"} 1",
            "vigil_limit_checks_total{via=\"local\"} 0",
            "vigil_limit_exceeded_total{limit=\"r\"} 1",
            "vigil_limits_store_up 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("version=\"abc\""), "{text}");
        let mut names = String::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let _ = writeln!(names, "{line}");
        }
        assert!(names.contains("# TYPE vigil_decisions counter"), "{names}");
    }
}
