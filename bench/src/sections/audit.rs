//! Section (f): audit log append and verify, in process.

use vigil::audit::SyncMode;

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let settings = run.settings;
    let quick = run.quick;
    let report = &mut *run.report;
    let saturated_batch_authorize = run.saturated_batch_authorize;
    report.section(
        "(f) Audit log: append and verify, in process",
        "| measure | value |",
    );
    let samples = if quick { 200 } else { 1000 };
    let (p50, p99) = fdatasync_cost(samples, settings);
    report.row(format!(
        "| fdatasync after a 350-byte append (disk cost{}) | p50 {} µs, p99 {} µs |",
        if settings.pinned {
            ", from the server's core"
        } else {
            ""
        },
        micros(p50),
        micros(p99)
    ));
    if settings.pinned {
        let (p50, p99) = fdatasync_probe(samples);
        report.row(format!(
            "| the same from the generator's core | p50 {} µs, p99 {} µs |",
            micros(p50),
            micros(p99)
        ));
    }
    for sync in [SyncMode::Batch, SyncMode::Always, SyncMode::Off] {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let (log, _) = AuditLog::open(
            AuditOptions::new(dir.path(), sync),
            key,
            Record::new("startup"),
        )
        .expect("open audit");
        let log = Arc::new(log);
        let deadline = Instant::now() + settings.duration;
        let mut tasks = Vec::new();
        for writer in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut record = Record::new("decision");
                record.sub = Some(format!("user{writer}"));
                record.obj = Some("crm.customers".into());
                record.act = Some("read".into());
                record.allowed = Some(true);
                record.reason = Some("allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst".into());
                record.pv = Some("0123456789abcdef".into());
                if log.append_one(record).await.is_ok() {
                    n += 1;
                }
            }
            n
        }));
        }
        let started = Instant::now();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("writer");
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        report.row(format!(
            "| append, sync {sync:?}, 64 concurrent writers | {rate:.0} records/s |"
        ));
        if sync == SyncMode::Batch && saturated_batch_authorize > 0.0 {
            report.target(
                "batch append is not the bottleneck",
                format!(
                    "{rate:.0} records/s vs Authorize saturated {saturated_batch_authorize:.0} req/s"
                ),
                "append ≥ Authorize".into(),
                rate >= saturated_batch_authorize,
            );
        }
        if sync == SyncMode::Off {
            let _ = log.close(Record::new("shutdown")).await;
            let bytes: u64 = std::fs::read_dir(dir.path())
                .expect("dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum();
            let record_size = bytes as f64 / (total + 2) as f64;
            report.row(format!(
                "| average record size on disk | {record_size:.0} bytes |"
            ));
            report.target(
                "decision record on disk",
                format!("{record_size:.0} bytes"),
                "≤ 400 bytes".into(),
                record_size <= 400.0,
            );
            let started = Instant::now();
            let verified = verify_dir(dir.path(), &[], None).expect("the log verifies");
            let took = started.elapsed().as_secs_f64();
            let rate = verified.records as f64 / took;
            report.row(format!(
                "| verify ({} records) | {rate:.0} records/s, {:.0} MB/s |",
                verified.records,
                verified.bytes as f64 / took / 1e6
            ));
            report.target(
                "audit verify",
                format!("{rate:.0} records/s"),
                "≥ 1,000,000 records/s".into(),
                rate >= 1e6,
            );
        }
    }
}
