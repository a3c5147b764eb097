//! Authorize and AuthorizeBatch over real gRPC on the shipped policies.

use crate::common;

use common::{audit_lines, repo_path, request, vigil_command, Launch, Vigil};
use tonic::Code;
use vigil::proto::{AuthorizeBatchRequest, AuthorizeRequest};

#[tokio::test]
async fn allow_and_deny_carry_reason_version_and_receipt() {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;

    let allow = client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(allow.allowed);
    assert_eq!(
        allow.reason,
        "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst"
    );
    assert_eq!(allow.policy_version.len(), 16);
    assert_eq!(allow.audit_hash.len(), 64);
    assert!(allow.audit_seq >= 2, "seq 1 is the startup record");

    let deny = client
        .authorize(request("frank", "finance.payments", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(!deny.allowed);
    assert_eq!(
        deny.reason,
        "denied by policy.csv:58 [p, contractor, finance.*, *, deny] via frank → contractor"
    );
    assert_eq!(deny.audit_seq, allow.audit_seq + 1);
    assert_ne!(deny.decision_id, allow.decision_id);

    let nobody = client
        .authorize(request("mallory", "hr.employees", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(!nobody.allowed);
    assert_eq!(
        nobody.reason,
        "no policy rule allows mallory to read hr.employees"
    );

    // Each answer is in the log, with the hash the client was given.
    let lines = audit_lines(&vigil.audit_dir);
    for answer in [&allow, &deny, &nobody] {
        let (_, line) = &lines[answer.audit_seq as usize - 1];
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["seq"], answer.audit_seq);
        let stored = vigil::audit::record::parse_hash(record["hash"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(stored), answer.audit_hash);
        assert_eq!(record["id"], answer.decision_id.as_str());
        assert_eq!(record["allowed"], answer.allowed);
        assert_eq!(record["reason"], answer.reason.as_str());
        assert_eq!(record["pv"], answer.policy_version.as_str());
    }
}

#[tokio::test]
async fn unix_socket_and_tcp_serve_the_same_decisions() {
    let vigil = Launch::new(repo_path("policies")).with_unix().start();
    let mut tcp = vigil.client().await;
    let mut unix =
        vigil::proto::access_control_client::AccessControlClient::new(vigil.unix_channel().await);
    for (subject, object, action) in [
        ("bob", "crm.tickets", "write"),
        ("bob", "crm.customers", "export"),
    ] {
        let a = tcp
            .authorize(request(subject, object, action))
            .await
            .unwrap()
            .into_inner();
        let b = unix
            .authorize(request(subject, object, action))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((a.allowed, &a.reason), (b.allowed, &b.reason));
        assert_eq!(b.audit_seq, a.audit_seq + 1);
    }
    let socket = vigil.unix.clone().unwrap();
    drop((tcp, unix));
    let (status, _, _) = vigil.terminate().await;
    assert!(status.success());
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn batch_answers_in_request_order_with_one_record_each() {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;
    let cases = [
        ("alice", "crm.customers", "read", true),
        ("alice", "hr.employees", "read", false),
        ("carol", "hr.employees", "read", true),
        ("frank", "hr.employees", "read", false),
        ("dave", "anything.at.all", "delete", true),
        ("erin", "reports.weekly", "read", true),
    ];
    let requests = cases.iter().map(|(s, o, a, _)| request(s, o, a)).collect();
    let answers = client
        .authorize_batch(AuthorizeBatchRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(answers.len(), cases.len());
    for (i, ((subject, object, action, expected), answer)) in cases.iter().zip(&answers).enumerate()
    {
        assert_eq!(
            answer.allowed, *expected,
            "{subject} {action} {object}: {}",
            answer.reason
        );
        if i > 0 {
            assert_eq!(answer.audit_seq, answers[i - 1].audit_seq + 1);
        }
    }
    let ids: std::collections::HashSet<_> = answers.iter().map(|a| &a.decision_id).collect();
    assert_eq!(ids.len(), answers.len());
}

#[tokio::test]
async fn bad_input_gets_a_clear_status() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--max-batch-items", "10", "--max-message-bytes", "65536"])
        .start();
    let mut client = vigil.client().await;

    for (req, field) in [
        (request("", "crm.customers", "read"), "subject"),
        (request("alice", "", "read"), "object"),
        (request("alice", "crm.customers", ""), "action"),
    ] {
        let status = client.authorize(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), format!("{field} must not be empty"));
    }

    let too_many = AuthorizeBatchRequest {
        requests: vec![request("alice", "crm.customers", "read"); 11],
    };
    let status = client.authorize_batch(too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limit is 10"),
        "{}",
        status.message()
    );

    let bad_item = AuthorizeBatchRequest {
        requests: vec![
            request("alice", "crm.customers", "read"),
            request("alice", "", "read"),
        ],
    };
    let status = client.authorize_batch(bad_item).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "requests[1].object must not be empty");

    let huge = request("alice", &"x".repeat(70_000), "read");
    let status = client.authorize(huge).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_message_bytes"),
        "{}",
        status.message()
    );

    let long_field = request("alice", &"x".repeat(5000), "read");
    let status = client.authorize(long_field).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // The server is still fine.
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
async fn a_request_token_the_request_cannot_fill_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model.conf"),
        "[request_definition]\nr = sub, obj, act, region\n[policy_definition]\np = sub, obj, act, region\n\
         [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\n\
         m = r.sub == p.sub && r.obj == p.obj && r.act == p.act && r.region == p.region\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        "p, alice, crm.customers, read, eu\n",
    )
    .unwrap();
    let vigil = Launch::new(dir.path()).start();
    let mut client = vigil.client().await;
    let status = client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("`region`"),
        "{}",
        status.message()
    );

    let mut eu = request("alice", "crm.customers", "read");
    eu.attributes.insert("region".into(), "eu".into());
    assert!(
        client
            .authorize(eu.clone())
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    eu.attributes.insert("region".into(), "us".into());
    assert!(!client.authorize(eu).await.unwrap().into_inner().allowed);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let vigil = Vigil::example();
    let channel = vigil.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "vigil.v1.AccessControl"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status, 1, "{service:?} is SERVING");
    }

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in ["vigil.v1.AccessControl", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn sigterm_finishes_flushes_and_exits_zero() {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;
    let answer = client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    let audit_dir = vigil.audit_dir.clone();
    drop(client);
    let (status, _stderr, dir) = vigil.terminate().await;
    assert!(status.success(), "exit status {status}");
    let lines = audit_lines(&audit_dir);
    let last: serde_json::Value = serde_json::from_str(&lines.last().unwrap().1).unwrap();
    assert_eq!(last["kind"], "shutdown");
    assert_eq!(last["seq"], answer.audit_seq + 1);
    let verify = vigil_command(
        &[
            "audit",
            "verify",
            "--audit-dir",
            audit_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn invalid_policy_files_stop_startup_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("policies/model.conf"),
        dir.path().join("model.conf"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        "g, alice, analyst\np, analyst, crm.customers, read\n",
    )
    .unwrap();
    let audit = dir.path().join("audit");
    let output = vigil_command(
        &[
            "serve",
            "--policies",
            dir.path().to_str().unwrap(),
            "--audit-dir",
            audit.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("policy.csv:2: `p` rule has 3 field(s) but model.conf line 9 defines 4"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("model.conf"),
        "[request_definition]\nr = sub, obj, act\n[policy]\np = sub\n",
    )
    .unwrap();
    let output = vigil_command(
        &[
            "serve",
            "--policies",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model.conf:3: unknown section [policy]"),
        "{stderr}"
    );
}

#[test]
fn trusted_mode_refuses_remote_listeners_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    let output = vigil_command(
        &[
            "serve",
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--auth",
            "trusted",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--force-trusted-remote"), "{stderr}");

    let vigil = Launch::new(&policies)
        .args(["--listen", "0.0.0.0:0", "--force-trusted-remote"])
        .subprocess()
        .start();
    assert!(
        vigil.stderr().contains("any caller can claim any subject"),
        "{}",
        vigil.stderr()
    );
}

#[test]
fn check_cli_prints_the_rule_and_exits_by_decision() {
    // A comma-separated list means what it says, spaces or not.
    let policies = repo_path("policies");
    let spaced = vigil_command(
        &[
            "check",
            "--policies",
            policies.to_str().unwrap(),
            "--subject",
            "nobody",
            "--roles",
            "viewer, analyst",
            "--object",
            "crm.customers",
            "--action",
            "read",
            "--explain",
        ],
        &policies,
    );
    let text = String::from_utf8_lossy(&spaced.stdout);
    assert!(text.contains("roles held: viewer, analyst"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    let run = |subject: &str, object: &str, action: &str| {
        vigil_command(
            &[
                "check",
                "--policies",
                policies.to_str().unwrap(),
                "--subject",
                subject,
                "--object",
                object,
                "--action",
                action,
            ],
            dir.path(),
        )
    };
    let allow = run("carol", "hr.employees", "read");
    assert_eq!(allow.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&allow.stdout).trim(),
        "allow: allowed by policy.csv:38 [p, data_steward, hr.employees, read, allow] via carol → data_steward"
    );
    let deny = run("bob", "crm.customers", "export");
    assert_eq!(deny.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&deny.stdout).starts_with("deny: denied by policy.csv:60"));

    let tenants = repo_path("policies/tenants");
    let output = vigil_command(
        &[
            "check",
            "--policies",
            tenants.to_str().unwrap(),
            "--subject",
            "bob",
            "--domain",
            "globex",
            "--object",
            "hr.x",
            "--action",
            "write",
        ],
        dir.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn _assert_types(_: AuthorizeRequest) {}
