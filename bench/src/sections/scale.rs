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
    for shape in [
        Shape::Rbac,
        Shape::RbacDomains,
        Shape::KeyMatch,
        Shape::Priority,
    ] {
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
            if lines == 100_000 && shape != Shape::Priority {
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

/// Pattern roles (`[role_matching] g2 = keyMatch2`): objects hold the role
/// of the route pattern they match (`/group7/item3` → `/group7/:item` →
/// `group7`), with 1,000 patterns, at up to 100,000 lines. Decided by the
/// compiled evaluator only (casbin-rs cannot express it).
pub(crate) async fn pattern_roles(run: &mut Run<'_>) {
    use vigil::authz::{Matching, MatchingFunction};
    const PATTERNS: usize = 1_000;
    let quick = run.quick;
    let report = &mut *run.report;
    let attributes = HashMap::new();
    let model = "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\ng2 = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && g2(r.obj, p.obj) && r.act == p.act\n";
    let matching = HashMap::from([(
        "g2".to_owned(),
        Matching {
            names: MatchingFunction::from_name("keyMatch2"),
            ..Matching::default()
        },
    )]);
    for lines in [10_000, 100_000] {
        let roles = lines / 50;
        let users = lines / 10;
        let origin = |line| Origin {
            file: "policy.csv".into(),
            line,
        };
        let mut rules = Vec::with_capacity(lines);
        let mut push = |ptype: &str, values: Vec<String>| {
            let line = rules.len() + 1;
            rules.push(RuleLine {
                ptype: ptype.into(),
                values,
                origin: origin(line),
            });
        };
        for u in 0..users {
            push("g", vec![format!("user{u}"), format!("role{}", u % roles)]);
        }
        for j in 0..PATTERNS {
            push("g2", vec![format!("/group{j}/:item"), format!("group{j}")]);
        }
        // (role r, group g) may read when k = g * roles + r; the rest are
        // other actions, so every rule is distinct.
        let readable = roles * PATTERNS;
        let p_rules = lines - users - PATTERNS;
        for k in 0..p_rules {
            let action = if k < readable {
                "read".to_owned()
            } else {
                format!("op{k}")
            };
            push(
                "p",
                vec![
                    format!("role{}", k % roles),
                    format!("group{}", (k / roles) % PATTERNS),
                    action,
                ],
            );
        }
        // The last group is readable by no role at these sizes.
        assert!(p_rules < (PATTERNS - 1) * roles);
        let engine = Engine::build_with_matching(model, &rules, &matching)
            .await
            .expect("pattern policy builds");
        let mut figures = Vec::new();
        for allowed in [true, false] {
            let count = if quick { 2_000 } else { 10_000 };
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let user = (i * 7919) % users;
                let role = user % roles;
                let mut group = (i * 104_729) % PATTERNS;
                // A readable rule for (role, group) exists when its k does.
                while group * roles + role >= p_rules.min(readable) {
                    group /= 2;
                }
                let object = if allowed {
                    format!("/group{group}/item{i}")
                } else {
                    format!("/group{}/item{i}", PATTERNS - 1)
                };
                let subject = format!("user{user}");
                let request = AccessRequest {
                    subject: &subject,
                    extra_roles: &[],
                    object: &object,
                    action: "read",
                    domain: "",
                    attributes: &attributes,
                };
                let started = Instant::now();
                let verdict = engine.decide(&request).expect("valid request");
                latencies.push(started.elapsed());
                assert_eq!(
                    verdict.allowed(),
                    allowed,
                    "{subject} {object}: {}",
                    verdict.reason(&request)
                );
            }
            latencies.sort_unstable();
            figures.push(latencies[latencies.len() / 2]);
            figures.push(latencies[latencies.len() * 99 / 100]);
        }
        report.row(format!(
            "| PatternRoles (g2 keyMatch2, {PATTERNS} patterns) | {lines} | {} | {} | {} | {} | {} | n/a |",
            engine.is_compiled(),
            micros(figures[0]),
            micros(figures[1]),
            micros(figures[2]),
            micros(figures[3]),
        ));
    }
}
