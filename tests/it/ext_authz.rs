//! Envoy's ext_authz v3 `Check`, sent as Envoy sends it (envoy-types'
//! client and messages, not vigil's proto): the HTTP request mapped by the
//! `[http]` config, the subject from a header or the mTLS peer principal,
//! the decision audited like Authorize.

use crate::common;

use common::{envoy_check, repo_path, Launch};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

#[tokio::test]
async fn envoy_checks_are_audited_decisions() {
    let scratch = tempfile::tempdir().unwrap();
    let config = common::datasets_config(scratch.path());
    let vigil = Launch::new(repo_path("policies"))
        .args(["--config", config.to_str().unwrap()])
        .start();
    let mut client = AuthorizationClient::new(vigil.channel().await);

    let allowed = client
        .check(envoy_check(
            "GET",
            "/v1/datasets/crm.customers/rows?limit=5",
            &[("x-user", "alice")],
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        allowed.status.as_ref().map(|s| s.code),
        Some(0),
        "{allowed:?}"
    );
    let ok = format!("{:?}", allowed.http_response);
    assert!(
        ok.contains("OkResponse") && ok.contains("x-vigil-decision-id"),
        "{ok}"
    );

    let denied = client
        .check(envoy_check(
            "GET",
            "/v1/datasets/finance.payments/rows",
            &[("x-user", "frank")],
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        denied.status.as_ref().map(|s| s.code),
        Some(tonic::Code::PermissionDenied as i32)
    );
    let body = format!("{:?}", denied.http_response);
    assert!(
        body.contains("DeniedResponse")
            && body.contains("Forbidden")
            && !body.contains("policy.csv"),
        "{body}"
    );

    // The mTLS peer principal is the subject when no header names one.
    let by_peer = client
        .check(envoy_check(
            "GET",
            "/v1/datasets/crm.customers/rows",
            &[],
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_peer.status.as_ref().map(|s| s.code),
        Some(0),
        "{by_peer:?}"
    );

    let nobody = client
        .check(envoy_check(
            "GET",
            "/v1/datasets/crm.customers/rows",
            &[],
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        nobody.status.as_ref().map(|s| s.code),
        Some(tonic::Code::Unauthenticated as i32)
    );
    assert!(format!("{:?}", nobody.http_response).contains("Unauthorized"));

    let decisions: Vec<serde_json::Value> = common::audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
}
