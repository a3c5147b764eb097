//! Go Casbin is the reference for decisions. `tests/go_casbin/cases.json`
//! holds Go Casbin's own answers (2.60.0, Debian's
//! golang-github-casbin-casbin-dev) over the (model, policy) pairs its
//! `*_test.go` files load from `examples/`, for requests built from every
//! value the policy names, role names, concrete instances of its patterns
//! and a few strangers. `scripts/go_casbin/generate.py` made it and says
//! how. Each pair is loaded as a policy directory and every request decided
//! by vigil's engine, which must answer exactly as Go did.

use std::{collections::BTreeMap, collections::HashMap, path::Path};

use serde::Deserialize;
use vigil::{authz::AccessRequest, policy::PolicySet};

#[derive(Deserialize)]
struct Corpus {
    reference: String,
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    /// `examples/MODEL + examples/POLICY` in casbin/casbin.
    source: String,
    model: String,
    policy: String,
    /// Role definitions whose names (or domains) Go's test matched with a
    /// function (`AddNamedMatchingFunc`); vigil reads it in `[role_matching]`.
    names: BTreeMap<String, String>,
    domains: BTreeMap<String, String>,
    /// Names of the `r` tokens, in order.
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    requests: Vec<Vec<String>>,
    /// One letter per request: `t` allowed, `f` denied, `e` Go's
    /// evaluation failed (vigil must not allow either).
    #[serde(default)]
    go: String,
    /// Go refused to load the pair; vigil must refuse it too.
    #[serde(default)]
    refused: Option<String>,
}

fn corpus() -> Corpus {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_casbin/cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn load(
    pair: &Pair,
) -> (
    tempfile::TempDir,
    Result<PolicySet, vigil::policy::PolicyError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = pair.model.clone();
    if !pair.names.is_empty() || !pair.domains.is_empty() {
        model.push_str("\n[role_matching]\n");
        for (definition, function) in &pair.names {
            model.push_str(&format!("{definition} = {function}\n"));
        }
        for (definition, function) in &pair.domains {
            model.push_str(&format!("{definition}.domain = {function}\n"));
        }
    }
    std::fs::write(dir.path().join("model.conf"), model).unwrap();
    std::fs::write(dir.path().join("policy.csv"), &pair.policy).unwrap();
    std::fs::write(
        dir.path().join("classification.toml"),
        "masking = \"off\"\n",
    )
    .unwrap();
    let loaded = PolicySet::load(dir.path()).await;
    (dir, loaded)
}

#[tokio::test]
async fn every_decision_equals_go_casbins() {
    let corpus = corpus();
    let mut decided = 0;
    let mut differences = Vec::new();
    for pair in &corpus.pairs {
        let (_dir, loaded) = load(pair).await;
        if let Some(why) = &pair.refused {
            assert!(
                loaded.is_err(),
                "{}: Go refuses it ({why}); vigil loaded it",
                pair.source
            );
            continue;
        }
        let set = loaded.unwrap_or_else(|e| panic!("{}: vigil refused it: {e}", pair.source));
        assert_eq!(pair.requests.len(), pair.go.len(), "{}", pair.source);
        for (values, go) in pair.requests.iter().zip(pair.go.chars()) {
            let mut fields = ["-"; 4];
            let mut attributes = HashMap::new();
            for (token, value) in pair.tokens.iter().zip(values) {
                match token.as_str() {
                    "sub" => fields[0] = value,
                    "obj" => fields[1] = value,
                    "act" => fields[2] = value,
                    "dom" => fields[3] = value,
                    other => {
                        attributes.insert(other.to_owned(), value.clone());
                    }
                }
            }
            let request = AccessRequest {
                subject: fields[0],
                extra_roles: &[],
                object: fields[1],
                action: fields[2],
                domain: if fields[3] == "-" { "" } else { fields[3] },
                attributes: &attributes,
            };
            let allowed = set.engine.decide(&request).is_ok_and(|v| v.allowed());
            decided += 1;
            if allowed != (go == 't') {
                differences.push(format!(
                    "{}: {values:?}: Go {}, vigil {}",
                    pair.source,
                    match go {
                        't' => "allows",
                        'f' => "denies",
                        _ => "fails",
                    },
                    if allowed { "allows" } else { "denies" }
                ));
            }
        }
    }
    assert!(decided > 5_000, "only {decided} decisions in the corpus");
    assert!(
        differences.is_empty(),
        "{} of {decided} decisions differ from {}:\n{}",
        differences.len(),
        corpus.reference,
        differences[..differences.len().min(30)].join("\n")
    );
}

/// Go Casbin's ABAC examples pass structs (`r.sub.Age > 18` in
/// examples/abac_rule_model.conf and abac_rule_policy.csv); vigil's
/// request values are strings, so such a set would deny every request
/// with an evaluation error. It is refused at load instead, saying why.
#[tokio::test]
async fn struct_attribute_rules_are_refused_at_load() {
    let pair = Pair {
        source: "examples/abac_rule_model.conf + examples/abac_rule_policy.csv".into(),
        model: "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\n\
                p = sub_rule, obj, act\n\n[policy_effect]\ne = some(where (p.eft == allow))\n\n\
                [matchers]\nm = eval(p.sub_rule) && r.obj == p.obj && r.act == p.act"
            .into(),
        policy: "p, r.sub.Age > 18, /data1, read\np, r.sub.Age < 60, /data2, write".into(),
        names: BTreeMap::new(),
        domains: BTreeMap::new(),
        tokens: Vec::new(),
        requests: Vec::new(),
        go: String::new(),
        refused: None,
    };
    let (_dir, loaded) = load(&pair).await;
    let Err(error) = loaded else {
        panic!("{}: loaded", pair.source)
    };
    let error = error.to_string();
    assert!(
        error.contains("model.conf:11")
            && error.contains("Unknown property 'Age'")
            && error.contains("request token of its own")
            && !error.contains("Error"),
        "{error}"
    );
}
