//! Section (a): Authorize over gRPC vs the floor (no-op RPC), one stream to 64.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let vigil = run.vigil;
    let settings = run.settings;
    let policies = run.policies;
    let report = &mut *run.report;
    let mut peak_rss = run.peak_rss;
    report.section(
    "(a, g) Authorize over gRPC vs the floor (no-op RPC, same server, same generator)",
    "| transport | audit sync | streams | req/s | ×floor | p50 µs | p99 µs | p999 µs | server CPU µs/call | server / generator busy % | errors | floor req/s | floor p50 µs | floor CPU µs/call | floor server / generator busy % | target |",
);
    for sync in ["batch", "always", "off"] {
        let server = Server::start(vigil, policies, &["--audit-sync", sync], settings.pinned);
        for unix in [false, true] {
            for streams in [1, 16, 64] {
                // Measured right before its scenario, on the same
                // server: the machine drifts over a run.
                let floor = drive(
                    &server,
                    unix,
                    streams,
                    Call::Floor,
                    Generator::Tonic,
                    settings,
                )
                .await;
                let m = drive(
                    &server,
                    unix,
                    streams,
                    Call::Authorize(authorize_mix()),
                    Generator::Tonic,
                    settings,
                )
                .await;
                let transport = if unix { "unix" } else { "tcp" };
                let ratio = m.throughput() / floor.throughput();
                let p50 = m.percentile(0.5);
                let floor_p50 = floor.percentile(0.5);
                let target = match (sync, streams) {
                    ("batch", 64) => "closed loop; saturated in (s)".to_owned(),
                    ("batch", 1) => {
                        // The disk's cost, measured now: it drifts.
                        let (fsync, _) = fdatasync_cost(200, settings);
                        let allowed = floor_p50 + fsync + Duration::from_micros(30);
                        report.target(
                            &format!("Authorize 1 stream, durable, {transport}: p50"),
                            format!("{} µs", micros(p50)),
                            format!(
                                "≤ floor {} + fdatasync {} + 30 = {} µs",
                                micros(floor_p50),
                                micros(fsync),
                                micros(allowed)
                            ),
                            p50 <= allowed,
                        );
                        format!("p50 ≤ {} µs", micros(allowed))
                    }
                    ("off", 1) => {
                        let allowed = floor_p50.mul_f64(1.3);
                        report.target(
                            &format!("Authorize 1 stream, sync off, {transport}: p50"),
                            format!("{} µs", micros(p50)),
                            format!("≤ 1.3× floor = {} µs", micros(allowed)),
                            p50 <= allowed,
                        );
                        format!("p50 ≤ {} µs", micros(allowed))
                    }
                    _ => String::new(),
                };
                let (busy, generator_busy) = m.busy();
                let (floor_busy, floor_generator_busy) = floor.busy();
                report.row(format!(
                    "| {transport} | {sync} | {streams} | {:.0} | {ratio:.2} | {} | {} | {} | {} | {busy:.0} / {generator_busy:.0} | {} | {:.0} | {} | {} | {floor_busy:.0} / {floor_generator_busy:.0} | {target} |",
                    m.throughput(),
                    micros(p50),
                    micros(m.percentile(0.99)),
                    micros(m.percentile(0.999)),
                    micros(m.cpu_per_call()),
                    m.errors,
                    floor.throughput(),
                    micros(floor_p50),
                    micros(floor.cpu_per_call()),
                ));
            }
        }
        peak_rss = peak_rss.max(server.memory("VmHWM"));
    }
    run.peak_rss = peak_rss;
}
