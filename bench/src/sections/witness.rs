//! Section (w): the audit witness in a local PostgreSQL (a throwaway
//! cluster, as the end-to-end tests start it). Shipping throughput: a
//! directory of records written beforehand, shipped by the shipper alone.
//! Then saturated durable Authorize with shipping off and on (same run,
//! alternating), with the witness lag sampled through GetPolicyStatus
//! during the shipping run.

use std::sync::atomic::Ordering;

use vigil::{
    audit::SyncMode,
    proto::GetPolicyStatusRequest,
    witness::{ShipSettings, ShipState, Shipper},
};

use crate::*;

/// Records written, then shipped, for the throughput figure.
const SHIPPED: u64 = 200_000;

fn postgres_bin() -> Option<String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|bin| bin.display().to_string())
}

pub(crate) async fn run(run: &mut Run<'_>) {
    let settings = run.settings;
    let report = &mut *run.report;
    report.section(
        "(w) Audit witness: shipping to a local PostgreSQL (fsync off, files in /dev/shm: the store's disk is not what is measured; pinned to the generator's core)",
        "| measure | figure |",
    );
    let Some(bin) = postgres_bin() else {
        report.note(
            "(w) not measured: no PostgreSQL under /usr/lib/postgresql (scripts/e2e installs it)"
                .into(),
        );
        return;
    };
    std::env::set_var("VIGIL_E2E_PG_BIN", bin);
    // The cluster's files in memory: its writes would otherwise reach the
    // disk beside the audit log's and slow the fdatasync every durable
    // answer waits for (in production the store is on another host).
    let memory = std::path::Path::new("/dev/shm");
    let pg = if memory.is_dir() {
        vigil_e2e::Postgres::start_in(memory)
    } else {
        vigil_e2e::Postgres::start()
    };
    if settings.pinned {
        // The store shares the generator's core, not the server's: in
        // production it is on another host.
        pg.pin_to_cpu(1);
    }

    // Throughput: the shipper alone on records already written.
    let dir = tempfile::tempdir().expect("temp dir");
    let audit_dir = dir.path().join("audit");
    let key = || ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    {
        let (log, _) = AuditLog::open(
            AuditOptions::new(&audit_dir, SyncMode::Off),
            key(),
            Record::new("startup"),
        )
        .expect("open audit");
        for chunk in 0..SHIPPED / 1_000 {
            let records = (0..1_000)
                .map(|i| {
                    let mut record = Record::new("decision");
                    record.sub = Some(format!("user{}", (chunk * 1_000 + i) % 5_000));
                    record.obj = Some("crm.customers".into());
                    record.act = Some("read".into());
                    record.allowed = Some(true);
                    record.reason = Some("allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst".into());
                    record.pv = Some("0123456789abcdef".into());
                    record
                })
                .collect();
            log.append(records).await.expect("append");
        }
        log.close(Record::shutdown("filled".into()))
            .await
            .expect("close");
    }
    let (log, _) = AuditLog::open(
        AuditOptions::new(&audit_dir, SyncMode::Off),
        key(),
        Record::new("startup"),
    )
    .expect("reopen audit");
    let state = std::sync::Arc::new(ShipState::default());
    let shipper = Shipper {
        settings: ShipSettings {
            url: pg.url(),
            chain: "bench-throughput".into(),
        },
        prune_limit: log.hold_pruning_until_shipped(),
        audit: log.clone(),
        state: state.clone(),
    };
    let started = Instant::now();
    let task = tokio::spawn(shipper.run());
    while state.shipped_seq.load(Ordering::Relaxed) < SHIPPED + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(300) && state.fork().is_none(),
            "shipping stalled: {}",
            state.summary(log.written_seq())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = state.shipped_seq.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    task.abort();
    report.row(format!(
        "| shipping {SHIPPED} records already written (batches of 2,000, one transaction each) | {rate:.0} records/s |"
    ));
    report.target(
        "witness shipping throughput into a local PostgreSQL",
        format!("{rate:.0} records/s"),
        "≥ 50,000 records/s".into(),
        rate >= 50_000.0,
    );

    // Saturated durable Authorize, shipping off and on, alternating.
    let url = pg.url();
    let mut off: Option<Measured> = None;
    let mut on: Option<Measured> = None;
    let mut lags: Vec<(f64, u64)> = Vec::new();
    for turn in 0..2 {
        let chain = format!("bench-saturated-{turn}");
        for shipping in [false, true] {
            let args: Vec<&str> = if shipping {
                vec!["--ship-to", &url, "--ship-chain", &chain]
            } else {
                vec![]
            };
            let server = Server::start(run.vigil, run.policies, &args, settings.pinned);
            let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sampler = shipping.then(|| {
                let admin = server.admin.clone();
                let samples = samples.clone();
                tokio::spawn(async move {
                    let mut client = vigil::proto::policy_admin_client::PolicyAdminClient::new(
                        unix_channel(admin).await,
                    );
                    loop {
                        if let Ok(status) = client
                            .get_policy_status(GetPolicyStatusRequest::default())
                            .await
                        {
                            let status = status.into_inner();
                            samples
                                .lock()
                                .expect("samples")
                                .push((status.witness_lag_seconds, status.witness_lag_records));
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            });
            let m = authorize_load(&server, 1024, settings).await;
            if let Some(sampler) = sampler {
                sampler.abort();
                lags.extend(samples.lock().expect("samples").drain(..));
            }
            drop(server);
            keep_faster(if shipping { &mut on } else { &mut off }, m);
        }
    }
    let (off, on) = (off.expect("measured"), on.expect("measured"));
    let ratio = on.throughput() / off.throughput();
    report.row(format!(
        "| saturated durable Authorize, shipping off / on (best of two turns) | {:.0} / {:.0} req/s = {ratio:.2}× |",
        off.throughput(),
        on.throughput()
    ));
    // What shipping costs the server itself, apart from how fast the
    // generator (sharing its core with the store) drove it.
    let ((off_busy, off_generator), (on_busy, on_generator)) = (off.busy(), on.busy());
    report.row(format!(
        "| server CPU per answered Authorize, shipping off / on (server core busy; generator core busy) | {:.2} / {:.2} µs ({off_busy:.0}% / {on_busy:.0}%; {off_generator:.0}% / {on_generator:.0}%) |",
        off.cpu_per_call().as_secs_f64() * 1e6,
        on.cpu_per_call().as_secs_f64() * 1e6,
    ));
    report.target(
        "Authorize saturated with shipping on vs off",
        format!("{ratio:.2}×"),
        "≥ 0.9×".into(),
        ratio >= 0.9,
    );
    if lags.is_empty() {
        report
            .note("witness lag: no samples (GetPolicyStatus did not answer during the run)".into());
    } else {
        let mut seconds: Vec<f64> = lags.iter().map(|(s, _)| *s).collect();
        let mut records: Vec<u64> = lags.iter().map(|(_, r)| *r).collect();
        seconds.sort_by(|a, b| a.total_cmp(b));
        records.sort_unstable();
        let at = |p: f64, n: usize| ((n as f64 - 1.0) * p).round() as usize;
        report.row(format!(
            "| witness lag under saturated durable Authorize ({} samples every 50 ms) | p50 {:.3} s / {} records, p99 {:.3} s / {} records |",
            lags.len(),
            seconds[at(0.5, seconds.len())],
            records[at(0.5, records.len())],
            seconds[at(0.99, seconds.len())],
            records[at(0.99, records.len())],
        ));
    }
}
