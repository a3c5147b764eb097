//! limits.toml against the real server over gRPC and HTTP: call rates deny
//! past their budget with the limit named and a retry time, reveal quotas
//! weaken treatments exactly at the quota, every refusal is in the audit
//! log, and a reload changes a limit live. (Budgets shared through Redis
//! are tested against a real Redis in e2e/tests/limits.rs.)

use crate::common;

use std::path::Path;

use common::{audit_lines, example_policies_copy, http_call, request, Launch};
use vigil::{
    mask::struct_from_json,
    proto::{
        data_masking_client::DataMaskingClient, policy_admin_client::PolicyAdminClient,
        MaskRequest, ReloadPoliciesRequest, UnmaskRequest,
    },
};

/// The example policies plus `limits`, as limits.toml.
fn policies_with(limits: &str) -> tempfile::TempDir {
    let dir = example_policies_copy();
    std::fs::write(dir.path().join("limits.toml"), limits).unwrap();
    dir
}

/// Audit records whose detail names `limit`.
fn records_naming(audit_dir: &Path, limit: &str) -> Vec<serde_json::Value> {
    audit_lines(audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["detail"]["limit"] == limit)
        .collect()
}

/// The string each masked record holds at `field`.
fn strings_at(records: &[vigil::proto::json::Struct], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            vigil::mask::struct_to_json(r)[field]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn mask_request(subject: &str, object: &str, records: Vec<serde_json::Value>) -> MaskRequest {
    MaskRequest {
        subject: subject.into(),
        object: object.into(),
        records: records
            .iter()
            .map(|r| struct_from_json(r).unwrap())
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_rate_denies_past_its_budget_naming_the_limit_and_when_to_retry() {
    let policies = policies_with(
        "[[rate]]\nname = \"analyst-reads\"\nrole = \"analyst\"\nobject = \"crm.*\"\n\
         action = \"read\"\nrate = \"5/min\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = vigil.client().await;
    let mut allowed = 0;
    let mut limited = Vec::new();
    for _ in 0..8 {
        let answer = client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner();
        if answer.allowed {
            allowed += 1;
            assert_eq!((answer.retry_after_ms, answer.limit.as_str()), (0, ""));
        } else {
            limited.push(answer);
        }
    }
    assert_eq!(allowed, 5, "the burst is the rate's count");
    assert_eq!(limited.len(), 3);
    for answer in &limited {
        assert_eq!(answer.limit, "analyst-reads");
        assert!(
            answer
                .reason
                .contains("rate limit analyst-reads (5/min per subject)"),
            "{}",
            answer.reason
        );
        // One call frees up every 12 s.
        assert!(
            (1..=12_000).contains(&answer.retry_after_ms),
            "{}",
            answer.retry_after_ms
        );
    }
    // Each subject has its own budget; the limit covers analysts only.
    let carol = client
        .authorize(request("carol", "crm.orders", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        carol.allowed,
        "carol is an analyst by inheritance, with a budget of her own"
    );
    for _ in 0..10 {
        assert!(
            client
                .authorize(request("bob", "crm.customers", "read"))
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    // A limit never allows what the policy denies, and does not count it.
    let denied = client
        .authorize(request("alice", "hr.employees", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(!denied.allowed && denied.limit.is_empty(), "{denied:?}");

    // Every limited answer is an audited deny naming the limit, with the
    // receipt the caller got.
    let records = records_naming(&vigil.audit_dir, "analyst-reads");
    assert_eq!(records.len(), 3);
    for (record, answer) in records.iter().zip(&limited) {
        assert_eq!(record["allowed"], false);
        assert_eq!(record["seq"], answer.audit_seq);
        assert_eq!(record["reason"], answer.reason.as_str());
    }
}

#[tokio::test]
async fn batches_spend_one_call_per_item() {
    let policies = policies_with(
        "[[rate]]\nname = \"per-object\"\nrate = \"2/h\"\nper = \"subject+object\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = vigil.client().await;
    let batch = vigil::proto::AuthorizeBatchRequest {
        requests: [
            "crm.customers",
            "crm.orders",
            "crm.customers",
            "crm.customers",
            "crm.orders",
        ]
        .iter()
        .map(|object| request("alice", object, "read"))
        .collect(),
    };
    let answers = client.authorize_batch(batch).await.unwrap().into_inner();
    let allowed: Vec<bool> = answers.responses.iter().map(|a| a.allowed).collect();
    assert_eq!(
        allowed,
        [true, true, true, false, true],
        "two per (subject, object)"
    );
    assert_eq!(answers.responses[3].limit, "per-object");
}

#[tokio::test]
async fn a_reveal_quota_weakens_values_exactly_at_the_quota() {
    let policies = policies_with(
        "[[quota]]\nname = \"steward-phones\"\nrole = \"data_steward\"\nlabel = \"phone\"\nreveals = \"3/h\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let records: Vec<serde_json::Value> = (0..5)
        .map(|i| serde_json::json!({ "phone": format!("1391234567{i}"), "email": "x@example.com" }))
        .collect();
    let answer = client
        .mask(mask_request("carol", "crm.customers", records.clone()))
        .await
        .unwrap()
        .into_inner();
    let phones = strings_at(&answer.records, "phone");
    assert_eq!(
        &phones[..3],
        ["13912345670", "13912345671", "13912345672"],
        "clear up to the quota"
    );
    // Past it, the next weaker grant: data stewards inherit analysts'
    // pseudonyms of confidential data.
    assert!(
        phones[3..].iter().all(|p| p.starts_with("pn_")),
        "{phones:?}"
    );
    let phone_actions: Vec<_> = answer
        .actions
        .iter()
        .filter(|a| a.label == "phone")
        .collect();
    assert_eq!(
        phone_actions
            .iter()
            .map(|a| a.quota.as_str())
            .collect::<Vec<_>>(),
        ["", "", "", "steward-phones", "steward-phones"]
    );
    assert_eq!(phone_actions[3].treatment, "pseudonym");
    assert!(phone_actions[3]
        .rule
        .contains("reveal quota steward-phones spent"));
    // Emails are not counted: all clear for a data steward.
    assert!(answer
        .actions
        .iter()
        .filter(|a| a.label == "email")
        .all(|a| a.treatment == "clear"));
    // One value frees up every 20 minutes.
    assert!(
        (1..=1_200_000).contains(&answer.retry_after_ms),
        "{}",
        answer.retry_after_ms
    );

    // The quota is per subject and spent: carol's next call sees none.
    let again = client
        .mask(mask_request(
            "carol",
            "crm.customers",
            records[..1].to_vec(),
        ))
        .await
        .unwrap()
        .into_inner();
    let phone = again.actions.iter().find(|a| a.label == "phone").unwrap();
    assert_eq!(phone.quota, "steward-phones");

    // The audit record counts weakened values per quota, never values.
    let record = audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .find(|r| r["id"] == answer.decision_id.as_str())
        .unwrap();
    assert_eq!(record["detail"]["quota"]["steward-phones"], 2);
    assert!(!record.to_string().contains("13912345673"));
}

#[tokio::test]
async fn unmask_spends_a_quota_all_or_nothing() {
    let policies = policies_with(
        "[[quota]]\nname = \"admin-cards\"\nsubject = \"dave\"\nlabel = \"bank_card\"\nreveals = \"2/h\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    // Payments keep card numbers as ciphertexts for analysts.
    let records: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::json!({ "card_number": "6222020200112233445" }))
        .collect();
    let masked = client
        .mask(mask_request("alice", "finance.payments", records))
        .await
        .unwrap()
        .into_inner();
    let sealed = strings_at(&masked.records, "card_number");
    assert!(
        sealed.iter().all(|v| v.starts_with("vigil:v")),
        "{sealed:?}"
    );
    let unmask = |values: &[String]| UnmaskRequest {
        subject: "dave".into(),
        object: "finance.payments".into(),
        values: values.to_vec(),
        ..Default::default()
    };
    // Three values against a quota of two: refused whole, nothing spent.
    let refused = client.unmask(unmask(&sealed)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("admin-cards"),
        "{}",
        refused.message()
    );
    let opened = client
        .unmask(unmask(&sealed[..2]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.values, ["6222020200112233445"; 2]);
    let refused = client.unmask(unmask(&sealed[2..])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let retry: u64 = refused
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1_800_000).contains(&retry), "{retry}");
    assert_eq!(records_naming(&vigil.audit_dir, "admin-cards").len(), 2);
}

#[tokio::test]
async fn a_reload_changes_a_limit_live_and_a_broken_one_names_its_line() {
    let policies = policies_with("[[rate]]\nname = \"r\"\nsubject = \"alice\"\nrate = \"2/h\"\n");
    let vigil = Launch::new(policies.path()).with_admin().start();
    let mut client = vigil.client().await;
    let mut count = 0;
    for _ in 0..4 {
        count += client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner()
            .allowed as u32;
    }
    assert_eq!(count, 2);

    let mut admin = PolicyAdminClient::new(vigil.admin_channel().await);
    // A broken file is refused with its line; the limit in force stays.
    std::fs::write(
        policies.path().join("limits.toml"),
        "[[rate]]\nname = \"r\"\nsubject = \"alice\"\nrate = \"lots\"\n",
    )
    .unwrap();
    let refused = admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("limits.toml:1"),
        "{}",
        refused.message()
    );
    assert!(
        !client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );

    std::fs::write(
        policies.path().join("limits.toml"),
        "[[rate]]\nname = \"r\"\nsubject = \"alice\"\nrate = \"6/h\"\n",
    )
    .unwrap();
    assert!(
        admin
            .reload_policies(ReloadPoliciesRequest {})
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    let mut count = 0;
    for _ in 0..8 {
        count += client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner()
            .allowed as u32;
    }
    assert_eq!(count, 6, "a changed limit starts a budget of its own");

    // Without limits.toml nothing is limited.
    std::fs::remove_file(policies.path().join("limits.toml")).unwrap();
    assert!(
        admin
            .reload_policies(ReloadPoliciesRequest {})
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    assert!(
        client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
}

#[tokio::test]
async fn http_answers_429_with_retry_after() {
    let policies = policies_with("[[rate]]\nname = \"r\"\nsubject = \"alice\"\nrate = \"1/h\"\n");
    let vigil = Launch::new(policies.path())
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let http = vigil.http.clone().unwrap();
    let body = r#"{"subject":"alice","object":"crm.customers","action":"read"}"#;
    let (status, _, _) = http_call(&http, "POST", "/v1/authorize", &[], body).await;
    assert_eq!(status, 200);
    let (status, head, body) = http_call(&http, "POST", "/v1/authorize", &[], body).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after));
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (answer["allowed"].clone(), answer["limit"].clone()),
        (false.into(), "r".into())
    );
    assert!(
        answer["retryAfterMs"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
}

#[test]
fn policy_check_and_test_cover_limits() {
    let policies = policies_with("[[rate]]\nname = \"r\"\nrate = \"10/s\"\n\n[[quota]]\nname = \"q\"\nlabel = \"fone\"\nreveals = \"1/h\"\n");
    let out = common::vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            policies.path().to_str().unwrap(),
        ],
        policies.path(),
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        printed.contains("limits.toml:5") && printed.contains("\"fone\" is not defined"),
        "{printed}"
    );
}

#[test]
fn policy_test_runs_limit_cases_on_fresh_budgets() {
    let policies = policies_with(
        "[[rate]]\nname = \"r\"\nrole = \"analyst\"\nrate = \"100/h\"\nburst = 10\n\n\
         [[quota]]\nname = \"q\"\nrole = \"data_steward\"\nlabel = \"phone\"\nreveals = \"3/h\"\n",
    );
    let cases = policies.path().join("policy_test.toml");
    let mut text = std::fs::read_to_string(&cases).unwrap();
    text.push_str(
        "\n[[limit_case]]\nname = \"analysts burst to 10\"\nsubject = \"alice\"\nobject = \"crm.customers\"\n\
         calls = 15\nexpect_allowed = 10\n\n\
         [[limit_case]]\nname = \"support is not limited\"\nsubject = \"bob\"\nobject = \"crm.customers\"\n\
         calls = 15\nexpect_allowed = 15\n\n\
         [[limit_case]]\nname = \"stewards see 3 phones\"\nsubject = \"carol\"\nobject = \"crm.customers\"\n\
         label = \"phone\"\ncalls = 5\nexpect_allowed = 3\n\n\
         [[limit_case]]\nname = \"analysts see no phone in clear at all\"\nsubject = \"alice\"\nobject = \"crm.customers\"\n\
         label = \"phone\"\ncalls = 5\nexpect_allowed = 0\n",
    );
    std::fs::write(&cases, &text).unwrap();
    let dir = policies.path().to_str().unwrap();
    let out = common::vigil_command(&["policy", "test", "--policies", dir], policies.path());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("stewards see 3 phones"), "{printed}");

    std::fs::write(
        &cases,
        text.replace("expect_allowed = 10", "expect_allowed = 11"),
    )
    .unwrap();
    let out = common::vigil_command(&["policy", "test", "--policies", dir], policies.path());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        printed.contains("expected 11 of 15 allowed, got 10"),
        "{printed}"
    );
}

#[tokio::test]
async fn mask_calls_spend_rates_too() {
    let policies = policies_with(
        "[[rate]]\nname = \"steward-reads\"\nsubject = \"carol\"\naction = \"read\"\nrate = \"2/h\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let record = vec![serde_json::json!({ "phone": "13912345678" })];
    for _ in 0..2 {
        client
            .mask(mask_request("carol", "crm.customers", record.clone()))
            .await
            .unwrap();
    }
    let refused = client
        .mask(mask_request("carol", "crm.customers", record))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("rate limit steward-reads"),
        "{}",
        refused.message()
    );
    assert!(refused.metadata().get("retry-after-ms").is_some());
    let records = records_naming(&vigil.audit_dir, "steward-reads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["kind"], "mask");
}

#[tokio::test]
async fn envoy_checks_past_a_rate_answer_429() {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let policies = policies_with("[[rate]]\nname = \"r\"\nsubject = \"alice\"\nrate = \"1/h\"\n");
    let scratch = tempfile::tempdir().unwrap();
    let config = common::datasets_config(scratch.path());
    let vigil = Launch::new(policies.path())
        .args(["--config", config.to_str().unwrap()])
        .start();
    let mut client = AuthorizationClient::new(vigil.channel().await);
    let check = || {
        common::envoy_check(
            "GET",
            "/v1/datasets/crm.customers/rows",
            &[("x-user", "alice")],
            "",
        )
    };
    let first = client.check(check()).await.unwrap().into_inner();
    assert_eq!(first.status.as_ref().map(|s| s.code), Some(0));
    let limited = client.check(check()).await.unwrap().into_inner();
    assert_eq!(
        limited.status.as_ref().map(|s| s.code),
        Some(tonic::Code::ResourceExhausted as i32)
    );
    let response = format!("{:?}", limited.http_response);
    assert!(
        response.contains("TooManyRequests")
            && response.contains("retry-after")
            && response.contains("x-vigil-decision-id"),
        "{response}"
    );
}

/// A reveal quota counts values, not fields: a labelled list of six
/// phone numbers, or a text holding six, is six reveals.
#[tokio::test]
async fn a_reveal_quota_counts_each_value_of_a_field() {
    let policies = policies_with(
        "[[quota]]\nname = \"steward-phones\"\nrole = \"data_steward\"\nlabel = \"phone\"\nreveals = \"3/h\"\n",
    );
    let vigil = Launch::new(policies.path()).start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let numbers: Vec<String> = (0..6).map(|i| format!("1391234567{i}")).collect();
    let answer = client
        .mask(mask_request(
            "carol",
            "crm.customers",
            vec![serde_json::json!({ "phone": numbers })],
        ))
        .await
        .unwrap()
        .into_inner();
    let shown = format!("{:?}", answer.records);
    for number in &numbers {
        assert!(
            !shown.contains(number.as_str()),
            "{number} in clear: {shown}"
        );
    }
    let phone = answer.actions.iter().find(|a| a.label == "phone").unwrap();
    assert_eq!(phone.quota, "steward-phones", "{phone:?}");
}

/// With the shared store unreachable, a refused Unmask names the quota its
/// values count against (cards), not the first the reader has (phones).
#[tokio::test]
async fn an_unreachable_store_names_the_quota_that_applies() {
    let policies = policies_with(
        "[[quota]]\nname = \"admin-phones\"\nsubject = \"dave\"\nlabel = \"phone\"\nreveals = \"5/h\"\n\n\
         [[quota]]\nname = \"admin-cards\"\nsubject = \"dave\"\nlabel = \"bank_card\"\nreveals = \"5/h\"\n",
    );
    let plain = Launch::new(policies.path()).start();
    let sealed = strings_at(
        &DataMaskingClient::new(plain.channel().await)
            .mask(mask_request(
                "alice",
                "finance.payments",
                vec![serde_json::json!({ "card_number": "6222020200112233445" })],
            ))
            .await
            .unwrap()
            .into_inner()
            .records,
        "card_number",
    );
    // Nothing listens on port 1: the store is away for good. The sealing
    // keyring is the same, so the second sidecar opens the first's values.
    let vigil = Launch::new(policies.path())
        .args(["--limits-backend", "redis://127.0.0.1:1/0"])
        .args([
            "--keyring",
            plain
                .dir
                .path()
                .join("vigil-data/keyring.json")
                .to_str()
                .unwrap(),
        ])
        .start();
    let refused = DataMaskingClient::new(vigil.channel().await)
        .unmask(UnmaskRequest {
            subject: "dave".into(),
            object: "finance.payments".into(),
            values: sealed,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("admin-cards") && !refused.message().contains("admin-phones"),
        "{}",
        refused.message()
    );
    assert_eq!(records_naming(&vigil.audit_dir, "admin-cards").len(), 1);
    assert!(records_naming(&vigil.audit_dir, "admin-phones").is_empty());
}
