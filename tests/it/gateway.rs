//! The two gateway doors, `/v1/check` (nginx, Traefik) and Envoy's
//! ext_authz `Check`, go through one check in the core: the same request
//! gets the same answer, the same audit record and the same refusal, and
//! each door is counted under its own name.

use crate::common;

use common::{envoy_check, http_call as call, repo_path, Launch};
use envoy_types::pb::envoy::{
    config::core::v3::header_value_option::HeaderAppendAction,
    service::auth::v3::{authorization_client::AuthorizationClient, check_response},
};

#[tokio::test]
async fn both_gateway_doors_refuse_audit_and_count_alike() {
    let scratch = tempfile::tempdir().unwrap();
    let config = common::datasets_config(scratch.path());
    let vigil = Launch::new(repo_path("policies"))
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .start();
    let http = vigil.http.clone().expect("an HTTP listener");
    let mut envoy = AuthorizationClient::new(vigil.channel().await);
    let original = |user: Option<&'static str>| {
        let mut headers = vec![
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/v1/datasets/crm.customers/rows"),
        ];
        if let Some(user) = user {
            headers.push(("X-User", user));
        }
        headers
    };

    // No subject, and an empty one, are the same refusal on both doors:
    // 401 with one message, each an audited authentication failure.
    let mut messages = Vec::new();
    for user in [None, Some("")] {
        let (status, _, body) = call(&http, "GET", "/v1/check", &original(user), "").await;
        assert_eq!(status, 401, "X-User {user:?}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        messages.push(error["message"].as_str().unwrap().to_owned());
    }
    for header in [&[][..], &[("x-user", "")][..]] {
        let refused = envoy
            .check(envoy_check(
                "GET",
                "/v1/datasets/crm.customers/rows",
                header,
                "",
            ))
            .await
            .unwrap()
            .into_inner();
        let status = refused.status.unwrap();
        assert_eq!(status.code, tonic::Code::Unauthenticated as i32);
        messages.push(status.message);
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one refusal, one message: {messages:?}");
    assert!(messages[0].contains("x-user"), "{messages:?}");

    // The same request is decided the same way by both.
    let (status, head, _) = call(&http, "GET", "/v1/check", &original(Some("alice")), "").await;
    assert_eq!(status, 200, "{head}");
    let allowed = envoy
        .check(envoy_check(
            "GET",
            "/v1/datasets/crm.customers/rows",
            &[("x-user", "alice"), ("x-vigil-decision-id", "forged")],
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(check_response::HttpResponse::OkResponse(ok)) = allowed.http_response else {
        panic!("not allowed: {allowed:?}");
    };
    // vigil's decision id replaces any the client sent, in every Envoy.
    let decision = ok
        .headers
        .iter()
        .find(|h| h.header.as_ref().unwrap().key == "x-vigil-decision-id")
        .expect("the decision id header");
    assert_eq!(
        decision.append_action,
        HeaderAppendAction::OverwriteIfExistsOrAdd as i32
    );

    let records: Vec<serde_json::Value> = common::audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str(&line).unwrap())
        .collect();
    for rpc in ["/v1/check", "Check"] {
        let refusals = records
            .iter()
            .filter(|r| r["kind"] == "authn_failure" && r["detail"]["rpc"] == rpc)
            .count();
        assert_eq!(refusals, 2, "{rpc}: both refusals audited");
    }
    let decisions = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["obj"] == "crm.customers")
        .count();
    assert_eq!(decisions, 2);

    let metrics = vigil.metrics.clone().expect("a metrics listener");
    let (_, _, body) = call(&metrics, "GET", "/metrics", &[], "").await;
    for line in [
        r#"vigil_decisions_total{rpc="Check",result="allow"} 1"#,
        r#"vigil_decisions_total{rpc="/v1/check",result="allow"} 1"#,
        r#"vigil_decisions_total{rpc="Authorize",result="allow"} 0"#,
    ] {
        assert!(body.contains(line), "{line} missing:\n{body}");
    }
}

/// The object decided is the one the upstream serves: spellings of a
/// denied path are denied, ambiguous ones refused and audited, and only the
/// headers the named gateway sets are read.
#[tokio::test]
async fn gateway_paths_and_headers_decide_what_the_upstream_serves() {
    let policies = common::example_policies_copy();
    let csv = policies.path().join("policy.csv");
    let mut rules = std::fs::read_to_string(&csv).unwrap();
    rules.push_str("\np, analyst, crm.salaries, *, deny\n");
    std::fs::write(&csv, rules).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("vigil.toml");
    std::fs::write(
        &config,
        "[http]\ngateway = \"nginx\"\nsubject_header = \"x-user\"\n\
         [[http.routes]]\nhost = \"reports.example.com\"\npath = \"/v1/datasets/{d}/rows\"\nobject = \"reports.{d}\"\n\
         [[http.routes]]\npath = \"/v1/datasets/{d}/rows\"\nobject = \"{d}\"\n\
         [[http.routes]]\npath = \"/reports/{name}\"\nobject = \"reports.{name}\"\n",
    )
    .unwrap();
    let vigil = Launch::new(policies.path())
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .start();
    let http = vigil.http.clone().unwrap();
    let mut envoy = AuthorizationClient::new(vigil.channel().await);
    let check =
        |uri: &'static str, user: &'static str, extra: &'static [(&'static str, &'static str)]| {
            let http = http.clone();
            async move {
                let mut headers = vec![
                    ("X-Original-Method", "GET"),
                    ("X-Original-URI", uri),
                    ("X-Original-Host", "api.example.com"),
                    ("X-User", user),
                ];
                headers.extend_from_slice(extra);
                call(&http, "GET", "/v1/check", &headers, "").await.0
            }
        };
    assert_eq!(
        check("/v1/datasets/crm.customers/rows", "alice", &[]).await,
        200
    );
    assert_eq!(
        check("/v1/datasets/crm.salaries/rows", "alice", &[]).await,
        403
    );
    for spelling in [
        "/v1/datasets/crm.salarie%73/rows",
        "/v1/datasets/crm%2Esalaries/rows?limit=5",
        "/v1//datasets/./crm.salaries/rows",
        "/reports/../v1/datasets/crm.salaries/rows",
    ] {
        assert_eq!(check(spelling, "alice", &[]).await, 403, "{spelling}");
        let envoy_answer = envoy
            .check(envoy_check("GET", spelling, &[("x-user", "alice")], ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            envoy_answer.status.unwrap().code,
            tonic::Code::PermissionDenied as i32,
            "ext_authz {spelling}"
        );
    }
    for ambiguous in [
        "/reports/%2e%2e%2fv1%2fdatasets%2fcrm.salaries%2frows",
        "/v1/datasets/crm.salaries;v=1/rows",
        "/v1/datasets/crm.salaries%00/rows",
        "/v1/datasets/crm.%EF%BD%93alaries/rows",
    ] {
        assert_eq!(check(ambiguous, "erin", &[]).await, 400, "{ambiguous}");
    }
    // Case-sensitive as Casbin is: another object, which no rule grants.
    assert_eq!(
        check("/v1/datasets/crm.SALARIES/rows", "frank", &[]).await,
        403
    );
    // A client's own host or path headers are not nginx's.
    let forged: &[(&str, &str)] = &[
        ("X-Forwarded-Host", "reports.example.com"),
        ("X-Forwarded-Uri", "/v1/datasets/crm.customers/rows"),
    ];
    assert_eq!(
        check("/v1/datasets/finance.payments/rows", "frank", forged).await,
        403
    );

    let refused = common::audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "decision" && r["obj"] == "unmappable")
        .count();
    assert_eq!(refused, 4, "every refused path is audited");
}
