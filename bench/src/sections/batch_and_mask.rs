//! Section (b): AuthorizeBatch and Mask from the tonic generator.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let vigil = run.vigil;
    let settings = run.settings;
    let policies = run.policies;
    let report = &mut *run.report;
    let mut peak_rss = run.peak_rss;
    let server = Server::start(vigil, policies, &[], settings.pinned);
    report.section("(b, c) AuthorizeBatch and Mask (TCP, audit sync batch, tonic generator)", "| scenario | streams | calls/s | items/s | p50 µs | p99 µs | server CPU µs/item | Authorize 64 streams req/s, just before | items/s ÷ Authorize |");
    let batch = AuthorizeBatchRequest {
        requests: authorize_mix().into_iter().cycle().take(100).collect(),
    };
    let (mask_single, mask_ten) = mask_requests();
    for (name, call, streams) in [
        ("AuthorizeBatch ×100", Call::Batch(batch), 16),
        ("Mask, 1 record of 20 fields", Call::Mask(mask_single), 64),
        ("Mask, 10 records of 20 fields", Call::Mask(mask_ten), 16),
    ] {
        // The reference is measured right before, on the same server:
        // compared with section (a)'s figure from minutes earlier, the
        // ratio would mostly measure this machine's drift.
        let authorize = drive(
            &server,
            false,
            64,
            Call::Authorize(authorize_mix()),
            Generator::Tonic,
            settings,
        )
        .await
        .throughput();
        let m = drive(&server, false, streams, call, Generator::Tonic, settings).await;
        let items = m.items as f64 / m.elapsed.as_secs_f64();
        let ratio = items / authorize;
        report.row(format!(
            "| {name} | {streams} | {:.0} | {:.0} | {} | {} | {:.2} | {authorize:.0} | {ratio:.2} |",
            m.throughput(),
            items,
            micros(m.percentile(0.5)),
            micros(m.percentile(0.99)),
            m.cpu.as_secs_f64() * 1e6 / m.items.max(1) as f64,
        ));
    }
    peak_rss = peak_rss.max(server.memory("VmHWM"));
    drop(server);
    report.note(format!(
        "peak RSS of the server under load on the example policies (sections a–c, up to 64 streams): {:.1} MB; at 1,024 streams see section (s)",
        peak_rss as f64 / 1e6
    ));
    report.target(
        "peak RSS under load, example policies (up to 64 streams)",
        format!("{:.1} MB", peak_rss as f64 / 1e6),
        "≤ 30 MB".into(),
        peak_rss <= 30_000_000,
    );
    run.peak_rss = peak_rss;
}
