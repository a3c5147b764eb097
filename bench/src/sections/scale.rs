//! Section (d): in-process decision cost at up to 100,000 policy lines, next to casbin-rs.

use crate::*;

pub(crate) async fn run(run: &mut Run<'_>) {
    let quick = run.quick;
    let report = &mut *run.report;
    report.section(
    "(d) In-process decision cost, uncached (distinct subjects and objects)",
    "| model | policy lines | compiled | allowed p50 µs | allowed p99 µs | denied p50 µs | denied p99 µs | casbin-rs p50 µs |",
);
    let attributes = HashMap::new();
    for shape in [Shape::Rbac, Shape::RbacDomains, Shape::KeyMatch] {
        for lines in [100, 10_000, 100_000] {
            let (model, rules) = synthetic(shape, lines);
            let engine = Engine::build(&model, &rules)
                .await
                .expect("synthetic policy builds");
            let mut figures = Vec::new();
            for allowed in [true, false] {
                let requests =
                    scale_requests(shape, lines, allowed, if quick { 5_000 } else { 20_000 });
                let mut latencies = Vec::with_capacity(requests.len());
                for scaled in &requests {
                    let request = scale_access(scaled, &attributes);
                    let started = Instant::now();
                    let verdict = engine.decide(&request).expect("valid request");
                    latencies.push(started.elapsed());
                    assert_eq!(
                        verdict.allowed(),
                        allowed,
                        "{shape:?} {lines}: {} {}: {}",
                        request.subject,
                        request.object,
                        verdict.reason(&request)
                    );
                }
                latencies.sort_unstable();
                figures.push(latencies[latencies.len() / 2]);
                figures.push(latencies[latencies.len() * 99 / 100]);
            }
            // casbin-rs alone, for comparison: few calls, it is linear.
            let samples = if lines >= 100_000 {
                3
            } else if lines >= 10_000 {
                20
            } else {
                500
            };
            let requests = scale_requests(shape, lines, true, samples);
            let mut reference = Vec::new();
            for scaled in &requests {
                let request = scale_access(scaled, &attributes);
                let started = Instant::now();
                let _ = engine.decide_reference(&request);
                reference.push(started.elapsed());
            }
            reference.sort_unstable();
            if lines == 100_000 {
                let worst = figures[1].max(figures[3]);
                report.target(
                    &format!("uncached decision p99 at 100,000 lines, {shape:?}"),
                    format!(
                        "allowed {} µs, denied {} µs",
                        micros(figures[1]),
                        micros(figures[3])
                    ),
                    "≤ 5 µs".into(),
                    worst <= Duration::from_micros(5),
                );
            }
            report.row(format!(
                "| {shape:?} | {lines} | {} | {} | {} | {} | {} | {} |",
                engine.is_compiled(),
                micros(figures[0]),
                micros(figures[1]),
                micros(figures[2]),
                micros(figures[3]),
                micros(reference[reference.len() / 2])
            ));
        }
    }
}
