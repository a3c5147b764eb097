//! Section (s): saturated Authorize and Mask from the lean generator.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let vigil = run.vigil;
    let settings = run.settings;
    let policies = run.policies;
    let report = &mut *run.report;
    let mut saturated_batch_authorize = run.saturated_batch_authorize;
    report.section(
        "(s) Saturated: lean generator (pre-encoded frames over bare HTTP/2), 1,024 streams on 16 connections",
        "| transport | audit sync | call | req/s | items/s | ×reference | p50 µs | p99 µs | server CPU µs/item | server / generator busy % | errors | reference | reference req/s | reference CPU µs/call | reference server / generator busy % | server peak RSS so far MB |",
    );
    let (mask_single, mask_ten) = mask_requests();
    for sync in ["batch", "off"] {
        let server = Server::start(vigil, policies, &["--audit-sync", sync], settings.pinned);
        let mut scenarios = vec![(
            "tcp",
            Call::Authorize(authorize_mix()),
            "Authorize",
            Call::Floor,
            "floor",
        )];
        if sync == "batch" {
            scenarios.push((
                "unix",
                Call::Authorize(authorize_mix()),
                "Authorize",
                Call::Floor,
                "floor",
            ));
            for (name, request) in [
                ("Mask, 1 record", &mask_single),
                ("Mask, 10 records", &mask_ten),
            ] {
                scenarios.push((
                    "tcp",
                    Call::Mask(request.clone()),
                    name,
                    Call::Authorize(authorize_mix()),
                    "Authorize",
                ));
            }
        }
        for (transport, call, name, reference_call, reference_name) in scenarios {
            let unix = transport == "unix";
            // Measured right before, on the same server: the machine
            // drifts over a run.
            let reference = drive(
                &server,
                unix,
                1024,
                reference_call,
                Generator::Lean,
                settings,
            )
            .await;
            let m = drive(&server, unix, 1024, call, Generator::Lean, settings).await;
            let items = m.items as f64 / m.elapsed.as_secs_f64();
            let ratio = items / reference.throughput();
            let (busy, generator_busy) = m.busy();
            let (reference_busy, reference_generator_busy) = reference.busy();
            report.row(format!(
                "| {transport} | {sync} | {name} | {:.0} | {items:.0} | {ratio:.2} | {} | {} | {:.2} | {busy:.0} / {generator_busy:.0} | {} | {reference_name} | {:.0} | {} | {reference_busy:.0} / {reference_generator_busy:.0} | {:.1} |",
                m.throughput(),
                micros(m.percentile(0.5)),
                micros(m.percentile(0.99)),
                m.cpu.as_secs_f64() * 1e6 / m.items.max(1) as f64,
                m.errors + reference.errors,
                reference.throughput(),
                micros(reference.cpu_per_call()),
                server.memory("VmHWM") as f64 / 1e6,
            ));
            match (sync, name) {
                ("batch", "Authorize") => {
                    if !unix {
                        saturated_batch_authorize = m.throughput();
                    }
                    report.target(
                        &format!("Authorize saturated, durable batch audit, {transport}"),
                        format!(
                            "{:.0} req/s = {ratio:.2}× floor ({:.0})",
                            m.throughput(),
                            reference.throughput()
                        ),
                        "≥ 0.6× floor".into(),
                        ratio >= 0.6,
                    );
                }
                ("batch", mask) => report.target(
                    &format!("{mask} of 20 fields per call: records/s vs Authorize saturated"),
                    format!(
                        "{items:.0} records/s = {ratio:.2}× ({:.0})",
                        reference.throughput()
                    ),
                    "≥ 0.5×".into(),
                    ratio >= 0.5,
                ),
                _ => {}
            }
        }
        // Not the RSS target's load: 1,024 calls in flight (10,240
        // records with ten-record Masks) hold their decoded requests
        // and encoded answers at once. The column above shows it.
    }
    run.saturated_batch_authorize = saturated_batch_authorize;
}
