//! The compiled evaluator against casbin-rs: random policies over the
//! model shapes vigil compiles, random requests, the same decision and the
//! same deciding rule every time. (The benchmark covers 100,000 lines; here
//! sizes stay small so CI stays fast.)

use std::collections::HashMap;

use rand::{rngs::StdRng, Rng, SeedableRng};
use vigil::authz::{AccessRequest, Engine, Origin, RuleLine};

struct Shape {
    name: &'static str,
    model: &'static str,
    /// Generates one policy line (ptype, values).
    rule: fn(&mut StdRng) -> (&'static str, Vec<String>),
    has_domain: bool,
}

const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "root", "erin"];
const ROLES: [&str; 5] = ["admin", "editor", "viewer", "auditor", "ops"];
const OBJECTS: [&str; 6] = [
    "data1",
    "data2",
    "/api/users/1",
    "/api/users/2/orders",
    "/api/admin",
    "reports.q3",
];
const PATTERNS: [&str; 7] = [
    "/api/*",
    "/api/users/:id",
    "/api/users/:id/orders",
    "/api/admin",
    "data*",
    "data1",
    "reports.*",
];
const ACTIONS: [&str; 4] = ["read", "write", "delete", "*"];
const DOMAINS: [&str; 3] = ["acme", "globex", "initech"];

fn pick(rng: &mut StdRng, from: &[&str]) -> String {
    from[rng.random_range(0..from.len())].to_owned()
}

fn subject(rng: &mut StdRng) -> String {
    if rng.random_bool(0.5) {
        pick(rng, &USERS)
    } else {
        pick(rng, &ROLES)
    }
}

fn grant(rng: &mut StdRng) -> (&'static str, Vec<String>) {
    (
        "g",
        vec![
            pick(
                rng,
                &USERS
                    .iter()
                    .chain(ROLES.iter())
                    .copied()
                    .collect::<Vec<_>>(),
            ),
            pick(rng, &ROLES),
        ],
    )
}

fn eft(rng: &mut StdRng) -> String {
    if rng.random_bool(0.3) {
        "deny".into()
    } else {
        "allow".into()
    }
}

fn shapes() -> Vec<Shape> {
    const RBAC_HEAD: &str = "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n";
    vec![
        Shape {
            name: "acl",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub && r.obj == p.obj && r.act == p.act\n",
            rule: |rng| ("p", vec![pick(rng, &USERS), pick(rng, &OBJECTS), pick(rng, &ACTIONS)]),
            has_domain: false,
        },
        Shape {
            name: "rbac",
            model: Box::leak(format!("{RBAC_HEAD}[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n").into_boxed_str()),
            rule: |rng| if rng.random_bool(0.4) { grant(rng) } else { ("p", vec![subject(rng), pick(rng, &OBJECTS), pick(rng, &ACTIONS)]) },
            has_domain: false,
        },
        Shape {
            name: "rbac_deny_override_keymatch",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow)) && !some(where (p.eft == deny))\n[matchers]\nm = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && (r.act == p.act || p.act == \"*\")\n",
            rule: |rng| if rng.random_bool(0.4) { grant(rng) } else { ("p", vec![subject(rng), pick(rng, &PATTERNS), pick(rng, &ACTIONS), eft(rng)]) },
            has_domain: false,
        },
        Shape {
            // Many distinct patterns: the keyMatch prefix index is chosen.
            name: "keymatch_prefix_index",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && r.act == p.act\n",
            rule: |rng| {
                if rng.random_bool(0.2) {
                    grant(rng)
                } else {
                    let pattern = ["/api/*", "/api/users/*", "/api/users/1", "/api/admin", "data*", "data1", "reports.*", "/", "*", "/api/users/2/orders", "/api/users/2/*", "rep*"][rng.random_range(0..12)].to_owned();
                    ("p", vec![subject(rng), pattern, pick(rng, &ACTIONS)])
                }
            },
            has_domain: false,
        },
        Shape {
            name: "rbac_domains",
            model: "[request_definition]\nr = sub, dom, obj, act\n[policy_definition]\np = sub, dom, obj, act\n[role_definition]\ng = _, _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act\n",
            rule: |rng| {
                if rng.random_bool(0.4) {
                    let (_, mut g) = grant(rng);
                    g.push(pick(rng, &DOMAINS));
                    ("g", g)
                } else {
                    ("p", vec![subject(rng), pick(rng, &DOMAINS), pick(rng, &OBJECTS), pick(rng, &ACTIONS)])
                }
            },
            has_domain: true,
        },
        Shape {
            name: "restful_keymatch2_regex",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && regexMatch(r.act, p.act)\n",
            rule: |rng| {
                if rng.random_bool(0.3) {
                    grant(rng)
                } else {
                    let act = ["read", "(read)|(write)", "w.*", "delete"][rng.random_range(0..4)].to_owned();
                    ("p", vec![subject(rng), pick(rng, &PATTERNS), act])
                }
            },
            has_domain: false,
        },
        Shape {
            name: "priority",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[role_definition]\ng = _, _\n[policy_effect]\ne = priority(p.eft) || deny\n[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n",
            rule: |rng| if rng.random_bool(0.4) { grant(rng) } else { ("p", vec![subject(rng), pick(rng, &OBJECTS), pick(rng, &ACTIONS), eft(rng)]) },
            has_domain: false,
        },
        Shape {
            name: "allow_unless_denied_resource_roles",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[role_definition]\ng = _, _\ng2 = _, _\n[policy_effect]\ne = !some(where (p.eft == deny))\n[matchers]\nm = g(r.sub, p.sub) && g2(r.obj, p.obj) && r.act == p.act\n",
            rule: |rng| match rng.random_range(0..3) {
                0 => grant(rng),
                1 => ("g2", vec![pick(rng, &OBJECTS), ["group_a", "group_b"][rng.random_range(0..2)].to_owned()]),
                _ => ("p", vec![subject(rng), ["group_a", "group_b", "data1"][rng.random_range(0..3)].to_owned(), pick(rng, &ACTIONS), eft(rng)]),
            },
            has_domain: false,
        },
        Shape {
            name: "disjunction_scan",
            model: "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act || r.sub == \"root\" && !(r.act == \"delete\")\n",
            rule: |rng| if rng.random_bool(0.4) { grant(rng) } else { ("p", vec![subject(rng), pick(rng, &OBJECTS), pick(rng, &ACTIONS)]) },
            has_domain: false,
        },
    ]
}

#[tokio::test]
async fn compiled_decisions_equal_casbin_rs() {
    let attributes = HashMap::new();
    let mut compared = 0;
    for shape in shapes() {
        for seed in 0..12u64 {
            let mut rng = StdRng::seed_from_u64(seed * 7919 + shape.name.len() as u64);
            let lines = rng.random_range(1..40);
            let mut seen = std::collections::HashSet::new();
            let mut rules = Vec::new();
            for line in 0..lines {
                let (ptype, values) = (shape.rule)(&mut rng);
                if seen.insert((ptype, values.clone())) {
                    rules.push(RuleLine {
                        ptype: ptype.into(),
                        values,
                        origin: Origin {
                            file: "policy.csv".into(),
                            line: line + 1,
                        },
                    });
                }
            }
            let engine = Engine::build(shape.model, &rules).await.unwrap();
            assert!(
                engine.is_compiled(),
                "{} is expected to compile",
                shape.name
            );
            for _ in 0..150 {
                let subject = subject(&mut rng);
                let object = pick(&mut rng, &OBJECTS);
                let action = pick(&mut rng, &ACTIONS[..3]);
                let domain = if shape.has_domain {
                    pick(&mut rng, &DOMAINS)
                } else {
                    String::new()
                };
                let extra: Vec<String> = if rng.random_bool(0.2) {
                    vec![pick(&mut rng, &ROLES)]
                } else {
                    Vec::new()
                };
                let request = AccessRequest {
                    subject: &subject,
                    extra_roles: &extra,
                    object: &object,
                    action: &action,
                    domain: &domain,
                    attributes: &attributes,
                };
                agree_with_casbin_rs(&engine, &request, || {
                    format!(
                        "{} seed {seed}: {subject} {action} {object} {domain} roles {extra:?}\nrules: {:#?}",
                        shape.name,
                        rules.iter().map(|r| format!("{}, {}", r.ptype, r.values.join(", "))).collect::<Vec<_>>()
                    )
                });
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 9 * 12 * 150);
}

#[tokio::test]
async fn models_outside_the_subset_fall_back_to_casbin_rs() {
    let model = "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub && r.obj + \"-x\" == p.obj && r.act == p.act\n";
    let rules = vec![RuleLine {
        ptype: "p".into(),
        values: vec!["alice".into(), "a-x".into(), "read".into()],
        origin: Origin {
            file: "policy.csv".into(),
            line: 1,
        },
    }];
    let engine = Engine::build(model, &rules).await.unwrap();
    assert!(!engine.is_compiled());
    let attributes = HashMap::new();
    let request = AccessRequest {
        subject: "alice",
        extra_roles: &[],
        object: "a",
        action: "read",
        domain: "",
        attributes: &attributes,
    };
    assert!(engine.decide(&request).unwrap().allowed());
}

fn rule_line(line: usize, ptype: &str, values: &[&str]) -> RuleLine {
    RuleLine {
        ptype: ptype.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
        origin: Origin {
            file: "policy.csv".into(),
            line,
        },
    }
}

/// The compiled decision, after asserting casbin-rs makes the same one for
/// the same reason; `context` describes the case when they differ.
fn agree_with_casbin_rs(
    engine: &Engine,
    request: &AccessRequest<'_>,
    context: impl FnOnce() -> String,
) -> bool {
    let fast = engine.decide(request).unwrap();
    let reference = engine.decide_reference(request).unwrap();
    let (fast, reference) = (
        (fast.allowed(), fast.reason(request)),
        (reference.allowed(), reference.reason(request)),
    );
    assert_eq!(fast, reference, "{}", context());
    fast.0
}

/// Each subject's decision on `data1`/`read`, compiled against casbin-rs.
fn decisions_on_data1(engine: &Engine, subjects: &[&str]) -> Vec<bool> {
    let attributes = HashMap::new();
    subjects
        .iter()
        .map(|subject| {
            let request = AccessRequest {
                subject,
                extra_roles: &[],
                object: "data1",
                action: "read",
                domain: "",
                attributes: &attributes,
            };
            agree_with_casbin_rs(engine, &request, || subject.to_string())
        })
        .collect()
}

// The role check is the most selective term here, so it indexes the rules:
// they are looked up for every role the subject reaches.
const ROLE_CHECK_MODEL: &str = "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = keyMatch(r.obj, p.obj) && g(r.sub, p.sub) && r.act == p.act\n";

/// casbin-rs stops walking grants after 10 levels: a role 10 or more links
/// above a subject does not count there. Such graphs are left to casbin-rs rather
/// than decided by reachability.
#[tokio::test]
async fn role_chains_past_casbins_depth_limit_are_left_to_casbin_rs() {
    let mut rules = Vec::new();
    let names: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    for pair in names.windows(2) {
        rules.push(rule_line(rules.len() + 1, "g", &[&pair[0], &pair[1]]));
    }
    for role in ["c9", "c10", "c11", "c29"] {
        rules.push(rule_line(rules.len() + 1, "p", &[role, "data*", "read"]));
    }
    let engine = Engine::build(ROLE_CHECK_MODEL, &rules).await.unwrap();
    assert!(!engine.is_compiled(), "a 29-link chain must not compile");
    // Each subject here holds a granted role within 9 links.
    assert_eq!(
        decisions_on_data1(&engine, &["c0", "c20", "c29", "stranger"]),
        [true, true, true, false]
    );
    let only_far: Vec<RuleLine> = rules
        .iter()
        .filter(|r| r.ptype == "g" || r.values[0] == "c29")
        .cloned()
        .collect();
    // Only c29 granted: c20 is 9 links below it, c19 10 (too far for
    // casbin-rs), c0 29.
    let engine = Engine::build(ROLE_CHECK_MODEL, &only_far).await.unwrap();
    assert_eq!(
        decisions_on_data1(&engine, &["c0", "c19", "c20"]),
        [false, false, true]
    );
}

/// Shallow graphs stay compiled, including closures past the 32 names the
/// role check keeps on the stack, and cycles.
#[tokio::test]
async fn wide_and_cyclic_role_graphs_match_casbin_rs() {
    let mut rules = Vec::new();
    let fan: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    for role in &fan {
        rules.push(rule_line(rules.len() + 1, "g", &["w", role]));
        // Every f also holds the shared "all" role: a diamond per f.
        rules.push(rule_line(rules.len() + 1, "g", &[role, "all"]));
    }
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "top")] {
        rules.push(rule_line(rules.len() + 1, "g", &[a, b]));
    }
    for role in ["f3", "f45", "top"] {
        rules.push(rule_line(rules.len() + 1, "p", &[role, "data*", "read"]));
    }
    // Once with the role check indexing the rules, once with it inside an
    // `||`, where it cannot index and runs per candidate rule.
    let per_candidate_model =
        ROLE_CHECK_MODEL.replace("g(r.sub, p.sub)", "(g(r.sub, p.sub) || r.sub == \"root\")");
    assert_ne!(per_candidate_model, ROLE_CHECK_MODEL);
    for model in [ROLE_CHECK_MODEL, per_candidate_model.as_str()] {
        let engine = Engine::build(model, &rules).await.unwrap();
        assert!(engine.is_compiled());
        assert_eq!(
            decisions_on_data1(&engine, &["w", "f3", "f10", "all", "x", "y", "stranger"]),
            [true, true, false, false, true, true, false]
        );
    }
}
