//! Every Casbin model kind served over gRPC, checked against expected
//! answers and against casbin-rs loading the same files on its own.

use crate::common;

use std::collections::HashMap;

use casbin::{CoreApi, Enforcer};
use common::{repo_path, Launch};
use vigil::proto::AuthorizeRequest;

struct Case {
    subject: &'static str,
    domain: &'static str,
    object: &'static str,
    action: &'static str,
    attributes: &'static [(&'static str, &'static str)],
    allowed: bool,
}

const fn case(
    subject: &'static str,
    object: &'static str,
    action: &'static str,
    allowed: bool,
) -> Case {
    Case {
        subject,
        domain: "",
        object,
        action,
        attributes: &[],
        allowed,
    }
}

async fn check(model: &str, cases: &[Case]) {
    let dir = repo_path(&format!("tests/models/{model}"));
    // casbin-rs takes `&'static str` paths.
    let leak = |name: &str| -> &'static str {
        Box::leak(dir.join(name).to_str().unwrap().to_owned().into_boxed_str())
    };
    let reference = Enforcer::new(leak("model.conf"), leak("policy.csv"))
        .await
        .expect("casbin-rs loads the model");
    let vigil = Launch::new(&dir).start();
    let mut client = vigil.client().await;
    for case in cases {
        let attributes: HashMap<String, String> = case
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let request = AuthorizeRequest {
            subject: case.subject.into(),
            object: case.object.into(),
            action: case.action.into(),
            domain: case.domain.into(),
            attributes: attributes.clone(),
        };
        let answer = client.authorize(request).await.unwrap().into_inner();
        let label = format!(
            "{model}: {} {} {} {} {:?}",
            case.subject, case.domain, case.object, case.action, case.attributes
        );
        assert_eq!(answer.allowed, case.allowed, "{label}: {}", answer.reason);

        // The reference, fed in the model's own token order.
        let tokens = &reference.get_model().get_model()["r"]["r"].tokens;
        let values: Vec<String> = tokens
            .iter()
            .map(|t| match t.strip_prefix("r_").unwrap() {
                "sub" => case.subject.to_owned(),
                "dom" => case.domain.to_owned(),
                "obj" => case.object.to_owned(),
                "act" => case.action.to_owned(),
                other => attributes[other].clone(),
            })
            .collect();
        assert_eq!(
            answer.allowed,
            reference.enforce(values).unwrap(),
            "{label}: differs from casbin-rs"
        );
    }
}

#[tokio::test]
async fn acl() {
    check(
        "acl",
        &[
            case("alice", "data1", "read", true),
            case("alice", "data1", "write", false),
            case("alice", "data2", "write", false),
            case("bob", "data2", "write", true),
            case("bob", "data2", "read", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn rbac_with_a_multi_level_hierarchy() {
    check(
        "rbac_hierarchy",
        &[
            case("alice", "doc", "read", true),
            case("alice", "doc", "delete", true),
            case("bob", "doc", "write", true),
            case("bob", "doc", "delete", false),
            case("carol", "doc", "read", true),
            case("carol", "log", "read", true),
            case("carol", "doc", "write", false),
            case("dave", "doc", "read", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn rbac_with_domains() {
    let d = |subject, domain, object, action, allowed| Case {
        subject,
        domain,
        object,
        action,
        attributes: &[],
        allowed,
    };
    check(
        "rbac_domains",
        &[
            d("alice", "domain1", "data1", "read", true),
            d("alice", "domain1", "data1", "write", true),
            d("alice", "domain2", "data2", "read", false),
            d("bob", "domain2", "data2", "write", true),
            d("bob", "domain1", "data1", "read", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn deny_override() {
    check(
        "deny_override",
        &[
            case("alice", "data1", "read", true),
            case("alice", "data2", "read", true),
            case("alice", "data2", "write", false),
            case("bob", "data2", "write", true),
            case("bob", "data1", "read", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn key_match_and_regex_match() {
    check(
        "keymatch",
        &[
            case("alice", "/alice_data/anything", "GET", true),
            case("alice", "/alice_data/resource1", "POST", true),
            case("alice", "/alice_data/resource2", "POST", false),
            case("bob", "/bob_data/1", "GET", true),
            case("bob", "/bob_data/1", "POST", true),
            case("bob", "/bob_data/1", "DELETE", false),
            case("bob", "/bob_data/1/2", "GET", false),
            case("cathy", "/cathy_data", "GET", true),
            case("cathy", "/cathy_data/x", "GET", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn resource_roles() {
    check(
        "resource_roles",
        &[
            case("alice", "data1", "read", true),
            case("alice", "data1", "write", true),
            case("alice", "data2", "write", true),
            case("alice", "data2", "read", false),
            case("bob", "data2", "write", true),
            case("bob", "data1", "write", false),
        ],
    )
    .await;
}

#[tokio::test]
async fn abac_request_tokens_from_attributes() {
    let a = |subject, attributes, allowed| Case {
        subject,
        domain: "",
        object: "orders",
        action: "read",
        attributes,
        allowed,
    };
    check(
        "abac",
        &[
            a("carol", &[("owner", "carol"), ("region", "us")], true),
            a("alice", &[("owner", "x"), ("region", "eu")], true),
            a("alice", &[("owner", "x"), ("region", "us")], false),
            a("bob", &[("owner", "x"), ("region", "us")], true),
        ],
    )
    .await;
}

#[tokio::test]
async fn priority_effect() {
    check(
        "priority",
        &[
            case("alice", "data1", "read", true),
            case("alice", "data1", "write", false),
            case("bob", "data2", "read", true),
            case("bob", "data2", "write", false),
        ],
    )
    .await;
}

/// Expected answers only, for models where casbin-rs is not the
/// reference (it decides them differently from Go Casbin).
async fn expect_decisions(dir: &str, cases: &[(&str, &str, &str, bool)]) -> Started {
    let vigil = Launch::new(repo_path(dir)).start();
    let mut client = vigil.client().await;
    for &(subject, object, action, allowed) in cases {
        let answer = client
            .authorize(common::request(subject, object, action))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.allowed, allowed,
            "{dir}: {subject} {object} {action}: {}",
            answer.reason
        );
    }
    Started {
        _vigil: vigil,
        client,
    }
}

/// The same, for requests with a domain: (subject, domain, object, action,
/// allowed).
async fn expect_domain_decisions(dir: &str, cases: &[(&str, &str, &str, &str, bool)]) {
    let vigil = Launch::new(repo_path(dir)).start();
    let mut client = vigil.client().await;
    for &(subject, domain, object, action, allowed) in cases {
        let mut request = common::request(subject, object, action);
        request.domain = domain.into();
        let answer = client.authorize(request).await.unwrap().into_inner();
        assert_eq!(
            answer.allowed, allowed,
            "{dir}: {subject} {domain} {object} {action}: {}",
            answer.reason
        );
    }
}

/// A started vigil (kept serving while the client is used) and a client
/// to it, for checks after the table.
struct Started {
    _vigil: common::Vigil,
    client: vigil::proto::access_control_client::AccessControlClient<tonic::transport::Channel>,
}

/// Go Casbin orders rules by an explicit `priority` column (casbin-rs keeps
/// file order, so it is not the reference here). Expected answers from Go
/// Casbin's TestPriorityExplicit (casbin/casbin, model_test.go).
#[tokio::test]
async fn explicit_priority_as_go_casbin_decides() {
    let mut started = expect_decisions(
        "tests/models/priority_explicit",
        &[
            ("alice", "data1", "write", true),
            ("alice", "data1", "read", true),
            ("bob", "data2", "read", false),
            ("bob", "data2", "write", true),
            ("data1_deny_group", "data1", "read", false),
            ("data1_deny_group", "data1", "write", false),
            ("data2_allow_group", "data2", "read", true),
            ("data2_allow_group", "data2", "write", true),
        ],
    )
    .await;
    // The deciding rule is still named by its own line.
    let answer = started
        .client
        .authorize(common::request("alice", "data1", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.reason.contains("policy.csv:11"), "{}", answer.reason);
}

/// Go Casbin reads `#` and `;` as comments anywhere on a model line
/// (examples/comment_model.conf, casbin/casbin); casbin-rs failed every
/// request on it.
#[tokio::test]
async fn inline_comments_in_the_model_as_go_casbin_reads_them() {
    expect_decisions(
        "tests/models/comments",
        &[
            ("alice", "data1", "read", true),
            ("alice", "data2", "read", false),
            ("bob", "data2", "write", true),
            ("bob", "data1", "write", false),
        ],
    )
    .await;
}

/// `in` over a tuple of single-quoted strings, as Go Casbin writes it
/// (examples/rbac_model_matcher_using_in_op.conf); expected answers from
/// Go's TestMatcherUsingInOperator (casbin/casbin, enforcer_test.go).
#[tokio::test]
async fn in_tuples_and_single_quotes_as_go_casbin_reads_them() {
    expect_decisions(
        "tests/models/in_operator",
        &[
            ("alice", "data1", "read", true),
            ("alice", "data2", "read", true),
            ("alice", "data3", "read", true),
            ("anyone", "data1", "read", false),
            ("anyone", "data2", "read", true),
            ("anyone", "data3", "read", true),
        ],
    )
    .await;
}

/// Role definitions whose names are patterns (`[role_matching]`), as Go
/// Casbin's TestRBACModelWithPattern (casbin/casbin, model_test.go) sets
/// them with AddNamedMatchingFunc: `g` with KeyMatch2, `g2` with KeyMatch2,
/// then KeyMatch3. Each definition has its own graph, as in Go.
#[tokio::test]
async fn pattern_roles_as_go_casbin_decides() {
    let mut started = expect_decisions(
        "tests/models/pattern_roles",
        &[
            ("alice", "/book/1", "GET", true),
            ("alice", "/book/2", "GET", true),
            ("alice", "/pen/1", "GET", true),
            ("alice", "/pen/2", "GET", false),
            ("bob", "/book/1", "GET", false),
            ("bob", "/book/2", "GET", false),
            ("bob", "/pen/1", "GET", true),
            ("bob", "/pen/2", "GET", true),
        ],
    )
    .await;
    // The role path shows the pattern the name matched.
    let answer = started
        .client
        .authorize(common::request("bob", "/pen/1", "GET"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer
            .reason
            .contains("policy.csv:5 [p, pen_admin, pen_group, GET]")
            && answer.reason.contains("bob → pen_admin"),
        "{}",
        answer.reason
    );
    expect_decisions(
        "tests/models/pattern_roles_keymatch3",
        &[
            ("alice", "/book2/1", "GET", true),
            ("alice", "/book2/2", "GET", true),
            ("alice", "/pen2/1", "GET", true),
            ("alice", "/pen2/2", "GET", false),
            ("bob", "/book2/1", "GET", false),
            ("bob", "/book2/2", "GET", false),
            ("bob", "/pen2/1", "GET", true),
            ("bob", "/pen2/2", "GET", true),
        ],
    )
    .await;
}

/// Temporal roles: grants with a time window, `g = _, _, (_, _)` checked
/// by Go's TimeMatchFunc (`g.condition = timeMatch`). Expected answers
/// from Go Casbin's TestTemporalRolesModel and
/// TestTemporalRolesModelWithDomain (casbin/casbin, model_test.go).
#[tokio::test]
async fn temporal_roles_as_go_casbin_decides() {
    let expected = [
        (1, true),
        (2, false),
        (3, true),
        (4, true),
        (5, true),
        (6, false),
        (7, true),
        (8, false),
    ];
    let mut cases = Vec::new();
    for (n, allowed) in expected {
        for action in ["read", "write"] {
            cases.push((format!("data{n}"), action, allowed));
        }
    }
    let table: Vec<(&str, &str, &str, bool)> = cases
        .iter()
        .map(|(object, action, allowed)| ("alice", object.as_str(), *action, *allowed))
        .collect();
    expect_decisions("tests/models/temporal_roles", &table).await;

    let vigil = Launch::new(repo_path("tests/models/domain_temporal_roles")).start();
    let mut client = vigil.client().await;
    for (n, allowed) in expected {
        for action in ["read", "write"] {
            let mut request = common::request("alice", &format!("data{n}"), action);
            request.domain = format!("domain{n}");
            let answer = client.authorize(request).await.unwrap().into_inner();
            assert_eq!(
                answer.allowed, allowed,
                "domain{n} data{n} {action}: {}",
                answer.reason
            );
        }
    }
}

/// The subject-priority effect (pycasbin's test_enforce_subpriority and
/// test_enforce_subpriority_with_domain, on Go Casbin's examples): a
/// user's own allow wins over its roles' denies.
#[tokio::test]
async fn subject_priority_as_go_casbin_decides() {
    let mut started = expect_decisions(
        "tests/models/subject_priority",
        &[
            ("jane", "data1", "read", true),
            ("alice", "data1", "read", true),
            // Derived: editor's own deny is deeper than admin's and root's.
            ("editor", "data1", "read", false),
        ],
    )
    .await;
    let answer = started
        .client
        .authorize(common::request("jane", "data1", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer
            .reason
            .contains("policy.csv:10 [p, jane, data1, read, allow]"),
        "the deciding rule keeps its line: {}",
        answer.reason
    );

    let vigil = Launch::new(repo_path("tests/models/subject_priority_domain")).start();
    let mut client = vigil.client().await;
    for (subject, object, domain) in [("alice", "data1", "domain1"), ("bob", "data2", "domain2")] {
        let mut request = common::request(subject, object, "write");
        request.domain = domain.into();
        let answer = client.authorize(request).await.unwrap().into_inner();
        assert!(answer.allowed, "{subject} {domain}: {}", answer.reason);
    }
}

/// A string literal holding `p.` stays the literal (Go Casbin's
/// TestSyntaxMatcher; casbin-rs rewrote "a.p.p.l.e" to "a.p_p_l.e").
#[tokio::test]
async fn string_literals_are_not_rewritten() {
    expect_decisions(
        "tests/models/syntax_matcher",
        &[
            ("a.p.p.l.e", "file", "read", true),
            ("other", "file", "read", false),
            ("a.p_p_l.e", "file", "read", false),
        ],
    )
    .await;
}

/// Domain patterns (TestDomainMatchModel, TestAllMatchModel of Go Casbin's
/// model_test.go): `g, alice, admin, *` grants admin in every domain.
#[tokio::test]
async fn domain_patterns_as_go_casbin_decides() {
    expect_domain_decisions(
        "tests/models/domain_pattern",
        &[
            ("alice", "domain1", "data1", "read", true),
            ("alice", "domain1", "data1", "write", true),
            ("alice", "domain1", "data2", "read", false),
            ("alice", "domain1", "data2", "write", false),
            ("alice", "domain2", "data2", "read", true),
            ("alice", "domain2", "data2", "write", true),
            ("bob", "domain2", "data1", "read", false),
            ("bob", "domain2", "data1", "write", false),
            ("bob", "domain2", "data2", "read", true),
            ("bob", "domain2", "data2", "write", true),
        ],
    )
    .await;
    expect_domain_decisions(
        "tests/models/all_pattern",
        &[
            ("alice", "domain1", "/book/1", "read", true),
            ("alice", "domain1", "/book/1", "write", false),
            ("alice", "domain2", "/book/1", "read", false),
            ("alice", "domain2", "/book/1", "write", true),
        ],
    )
    .await;
}

/// Mistakes in `[role_matching]` are refused at model.conf:LINE, never
/// ignored: a definition the model lacks, a function vigil does not know,
/// `.domain` on a definition without domains, a line that is no setting.
#[test]
fn role_matching_mistakes_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["policy.csv", "classification.toml"] {
        std::fs::copy(
            repo_path("tests/models/pattern_roles").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let model = std::fs::read_to_string(repo_path("tests/models/pattern_roles/model.conf"))
        .unwrap()
        .replace(
            "g = keyMatch2\ng2 = keyMatch2",
            "g3 = keyMatch2\ng2 = keyMatc2\ng.domain = keyMatch\nwhatever",
        );
    std::fs::write(dir.path().join("model.conf"), &model).unwrap();
    let line = |text: &str| model.lines().position(|l| l == text).unwrap() + 1;
    let output = common::vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &*String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    for (setting, why) in [
        ("g3 = keyMatch2", "is not a role definition"),
        ("g2 = keyMatc2", "unknown function `keyMatc2`"),
        ("g.domain = keyMatch", "has no domain"),
        ("whatever", "is not `g = FUNCTION`"),
    ] {
        let at = format!("model.conf:{}", line(setting));
        assert!(
            text.lines().any(|l| l.contains(&at) && l.contains(why)),
            "no `{at}: … {why}` in:\n{text}"
        );
    }

    // Grants with three condition parameters (not Go's built-in time
    // window) and nothing saying how to check them: the role definition's
    // line says what to add.
    let temporal = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("tests/models/temporal_roles/classification.toml"),
        temporal.path().join("classification.toml"),
    )
    .unwrap();
    std::fs::write(
        temporal.path().join("policy.csv"),
        "p, admin, data1, read\ng, alice, admin, a, b, c\n",
    )
    .unwrap();
    let model = std::fs::read_to_string(repo_path("tests/models/temporal_roles/model.conf"))
        .unwrap()
        .replace("[role_matching]\ng.condition = timeMatch\n", "")
        .replace("g = _, _, (_, _)", "g = _, _, (_, _, _)");
    std::fs::write(temporal.path().join("model.conf"), &model).unwrap();
    let output = common::vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            temporal.path().to_str().unwrap(),
        ],
        temporal.path(),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &*String::from_utf8_lossy(&output.stderr);
    let at = format!("model.conf:{}", line_of(&model, "g = _, _, (_, _, _)"));
    assert!(
        text.contains(&at) && text.contains("g.condition = timeMatch"),
        "{text}"
    );
}

fn line_of(text: &str, wanted: &str) -> usize {
    text.lines().position(|l| l == wanted).unwrap() + 1
}

/// `[constraint_definition]` (Go Casbin's rbac_with_constraints_model.conf
/// and model/constraint.go): a policy keeping the constraints loads and
/// decides; each broken constraint refuses the set, naming the grant and
/// the constraint's line.
#[tokio::test]
async fn role_constraints_are_checked_at_load() {
    expect_decisions(
        "tests/models/constraints",
        &[
            ("alice", "invoices", "write", true),
            ("alice", "invoices", "approve", false),
            ("frank", "database", "admin", true),
        ],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    for file in ["model.conf", "classification.toml"] {
        std::fs::copy(
            repo_path("tests/models/constraints").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let policy = std::fs::read_to_string(repo_path("tests/models/constraints/policy.csv")).unwrap()
        + "g, alice, finance_approver\n\
           g, carol, payroll_edit\n\
           g, gina, superadmin\n\
           g, hal, db_admin\n";
    std::fs::write(dir.path().join("policy.csv"), &policy).unwrap();
    let output = common::vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &*String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    let model = std::fs::read_to_string(dir.path().join("model.conf")).unwrap();
    for (grant, key, constraint) in [
        (
            "g, alice, finance_approver",
            "`c`",
            "c = sod(\"finance_requester\", \"finance_approver\")",
        ),
        (
            "g, carol, payroll_edit",
            "`c2`",
            "c2 = sodMax([\"payroll_view\", \"payroll_edit\", \"payroll_approve\"], 1)",
        ),
        (
            "g, gina, superadmin",
            "`c3`",
            "c3 = roleMax(\"superadmin\", 2)",
        ),
        (
            "g, hal, db_admin",
            "`c4`",
            "c4 = rolePre(\"db_admin\", \"security_trained\")",
        ),
    ] {
        let at = format!("policy.csv:{}", line_of(&policy, grant));
        let constraint_at = format!("model.conf:{}", line_of(&model, constraint));
        assert!(
            text.lines()
                .any(|l| l.contains(&at) && l.contains(key) && l.contains(&constraint_at)),
            "no `{at}: breaks constraint {key} ({constraint_at})` in:\n{text}"
        );
    }
}

/// `eval()` of a rule column written in Go's syntax (single quotes):
/// examples/eval_operator_model.conf and eval_operator_policy.csv of
/// casbin/casbin. casbin-rs failed every request on it ('admin' is a
/// character literal to rhai), with engine text as the reason.
#[tokio::test]
async fn eval_of_rule_expressions_as_go_casbin_reads_them() {
    let mut started = expect_decisions(
        "tests/models/eval_operator",
        &[
            ("admin", "users", "write", true),
            ("admin", "users", "read", false),
            ("admin", "groups", "write", false),
            ("bob", "users", "write", false),
        ],
    )
    .await;
    let answer = started
        .client
        .authorize(common::request("admin", "users", "write"))
        .await
        .unwrap()
        .into_inner();
    // The rule is quoted as written, single quotes and all.
    assert!(
        answer
            .reason
            .contains("[p, r.sub == 'admin' || false, r.obj == 'users', write]"),
        "{}",
        answer.reason
    );
}

/// Go Casbin's block matchers, `let` statements and early returns
/// (examples/rbac_with_hierarchy_multiline_model.conf and
/// rbac_with_early_return_model.conf over
/// rbac_with_hierarchy_multiline_policy.csv of casbin/casbin); expected
/// answers from Go's TestMultiLineMatcherWithLetStatements and
/// TestMultiLineMatcherWithEarlyReturn (multiline_matcher_test.go).
#[tokio::test]
async fn block_matchers_as_go_casbin_reads_them() {
    let cases = [
        ("alice", "data1", "read", true),
        ("alice", "data1", "write", true),
        ("bob", "data2", "write", true),
        ("bob", "data1", "read", false),
        ("bob", "data1", "write", false),
        ("alice", "data2", "write", true),
    ];
    expect_decisions("tests/models/block_matcher_let", &cases).await;
    let mut started = expect_decisions("tests/models/block_matcher_early_return", &cases).await;
    let answer = started
        .client
        .authorize(common::request("alice", "data2", "write"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.reason.contains("policy.csv:3"), "{}", answer.reason);
}

/// Organization-based access (examples/orbac_model.conf of casbin/casbin:
/// `r = sub, org, obj, act`, the organization a request token of its own,
/// read from the request's attributes); expected answers from Go's
/// TestOrBACModel (orbac_test.go).
#[tokio::test]
async fn orbac_as_go_casbin_decides() {
    let vigil = Launch::new(repo_path("tests/models/orbac")).start();
    let mut client = vigil.client().await;
    for (subject, org, object, action, allowed) in [
        ("alice", "org1", "data1", "read", true),
        ("alice", "org1", "data1", "write", true),
        ("alice", "org1", "data2", "write", true),
        ("bob", "org1", "data1", "read", true),
        ("bob", "org1", "data1", "write", false),
        ("charlie", "org2", "report1", "write", true),
        ("david", "org2", "report2", "read", true),
        ("david", "org2", "report2", "write", false),
        ("alice", "org2", "report1", "read", false),
        ("charlie", "org1", "data1", "read", false),
        ("alice", "org1", "report1", "read", false),
        ("charlie", "org2", "data1", "read", false),
    ] {
        let mut request = common::request(subject, object, action);
        request.attributes.insert("org".into(), org.into());
        let answer = client.authorize(request).await.unwrap().into_inner();
        assert_eq!(
            answer.allowed, allowed,
            "{subject} {org} {object} {action}: {}",
            answer.reason
        );
    }
}

/// `keyGet` and `keyGet2` return the wildcard's text, tested with `in`
/// (examples/keyget_model.conf and keyget2_model.conf of casbin/casbin,
/// with keymatch_policy.csv's and keymatch2_policy.csv's shapes).
#[tokio::test]
async fn key_get_functions_as_go_casbin_decides() {
    expect_decisions(
        "tests/models/keyget",
        &[
            ("alice", "/alice_data/age", "GET", true),
            ("alice", "/alice_data/name", "GET", true),
            ("alice", "/alice_data/phone", "GET", false),
            ("alice", "/alice_data/resource1", "POST", true),
            ("alice", "/alice_data/resource2", "POST", false),
            ("bob", "/alice_data/age", "GET", false),
        ],
    )
    .await;
    expect_decisions(
        "tests/models/keyget2",
        &[
            ("alice", "/alice_data/age", "GET", true),
            ("alice", "/alice_data/name", "GET", true),
            ("alice", "/alice_data/x", "GET", false),
            ("alice", "/alice_data/name", "POST", false),
        ],
    )
    .await;
}

/// Link conditions with no `[role_matching]` line are Go's built-in time
/// window, as Go's tests register it (util.TimeMatchFunc): the examples
/// load unchanged. rbac_with_different_types_of_roles (a grant expired in
/// year 0000 no longer counts) and rbac_with_domains_conditional, from
/// casbin/casbin.
#[tokio::test]
async fn time_window_conditions_by_default_as_go_tests_register_them() {
    expect_decisions(
        "tests/models/different_role_types",
        &[
            ("alice", "data1", "read", true),
            ("alice", "data1", "write", true),
            ("alice", "data2", "read", false),
            ("bob", "data2", "read", true),
            ("bob", "data2", "write", false),
            ("carol", "data2", "read", false),
            ("carol", "data2", "write", false),
        ],
    )
    .await;
    expect_domain_decisions(
        "tests/models/domains_conditional",
        &[
            ("alice", "domain1", "service1", "/list", true),
            ("alice", "domain1", "service1", "/get/1/detail", true),
            ("alice", "domain1", "service1", "/broadcast", false),
            ("bob", "domain2", "service2", "/trip", true),
            ("bob", "domain1", "service1", "/list", false),
            ("jack", "domain1", "service1", "/list", false),
        ],
    )
    .await;
}

/// Relationship-based access (examples/rebac_model.conf of casbin/casbin):
/// a user's role on an object, the object's type.
#[tokio::test]
async fn rebac_as_go_casbin_decides() {
    expect_decisions(
        "tests/models/rebac",
        &[
            ("alice", "doc1", "read", true),
            ("alice", "doc2", "read", false),
            ("bob", "doc2", "read", true),
            ("bob", "doc1", "read", false),
            ("alice", "doc1", "write", false),
        ],
    )
    .await;
}

/// Go's explicit-override effects, `priority(p_eft) && !some(where (p_eft
/// == deny))` and its subjectPriority form
/// (examples/priority_explicit_override_* and
/// subject_priority_explicit_override_* of casbin/casbin): a matching deny
/// wins whatever its priority.
#[tokio::test]
async fn explicit_override_effects_as_go_casbin_decides() {
    expect_decisions(
        "tests/models/priority_explicit_override",
        &[
            ("alice", "data2", "read", true),
            ("bob", "data2", "write", true),
            ("alice", "data1", "read", false),
        ],
    )
    .await;
    expect_decisions(
        "tests/models/subject_priority_explicit_override",
        &[
            ("alice", "data", "write", false),
            ("writer", "data", "write", false),
            ("bob", "data", "write", false),
        ],
    )
    .await;
}

/// Bell-LaPadula (examples/blp_model.conf of casbin/casbin): levels passed
/// as attributes are ordered as the numbers Go's callers pass, so level 10
/// reads level 9 (as text, "10" < "9").
#[tokio::test]
async fn ordered_levels_compare_as_numbers() {
    let vigil = Launch::new(repo_path("tests/models/blp")).start();
    let mut client = vigil.client().await;
    for (subject_level, object_level, action, allowed) in [
        ("3", "1", "read", true),
        ("1", "3", "read", false),
        ("10", "9", "read", true),
        ("9", "10", "read", false),
        ("1", "3", "write", true),
        ("10", "9", "write", false),
        ("3", "3", "write", true),
    ] {
        let mut request = common::request("alice", "data1", action);
        request.attributes = HashMap::from([
            ("sub_level".to_owned(), subject_level.to_owned()),
            ("obj_level".to_owned(), object_level.to_owned()),
        ]);
        let answer = client.authorize(request).await.unwrap().into_inner();
        assert_eq!(
            answer.allowed, allowed,
            "{subject_level} {action} {object_level}: {}",
            answer.reason
        );
    }
}

/// Go Casbin turns on keyMatch for g's domains by itself when the matcher
/// says `keyMatch(r.dom, p.dom)` (TestKeyMatchWithRBACInDomain, examples
/// keymatch_with_rbac_in_domain): `can_manage → can_use` granted in domain
/// `*` holds in `engines/engine1`.
#[tokio::test]
async fn domain_keymatch_from_the_matcher_as_go_casbin_decides() {
    expect_domain_decisions(
        "tests/models/keymatch_with_rbac_in_domain",
        &[
            ("Username==test2", "engines/engine1", "*", "attach", true),
            ("Username==test2", "engines/engine1", "*", "pause", true),
            ("Username==test2", "engines/engine2", "*", "attach", false),
            ("Username==test3", "engines/engine1", "*", "attach", false),
        ],
    )
    .await;
    // policy check says what it did.
    let out = common::vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            repo_path("tests/models/keymatch_with_rbac_in_domain")
                .to_str()
                .unwrap(),
        ],
        &repo_path("."),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert!(
        text.contains("keyMatch(r.dom, p.dom) makes the domains of g's grants keyMatch"),
        "{text}"
    );
}
