//! `--auth jwt`: verified identity, roles from the token, and a clear,
//! audited refusal for every bad token.

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::{audit_lines, fixture, repo_path, request, vigil_command, Launch, Vigil};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tonic::{Code, Request};
use vigil::proto::{AuthorizeBatchRequest, AuthorizeRequest, AuthorizeResponse};

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "vigil";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(subject: &str, roles: &[&str]) -> Value {
    json!({ "sub": subject, "roles": roles, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 300 })
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256_key() -> EncodingKey {
    let secret = std::fs::read(fixture("jwt/hs256.secret")).unwrap();
    EncodingKey::from_secret(secret.trim_ascii_end())
}

fn rsa_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture(&format!("jwt/{name}"))).unwrap()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("jwt/ec-private.pem")).unwrap()).unwrap()
}

fn with_token(token: Option<&str>, message: AuthorizeRequest) -> Request<AuthorizeRequest> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn jwt_server(key_flag: &str, key_file: &str) -> Vigil {
    jwt_launch(key_flag, key_file).start()
}

fn jwt_launch(key_flag: &str, key_file: &str) -> Launch {
    Launch::new(repo_path("policies"))
        .args([
            "--auth",
            "jwt",
            key_flag,
            fixture(key_file).to_str().unwrap(),
        ])
        .args([
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
            "--jwt-leeway",
            "5s",
        ])
}

async fn authorize(
    vigil: &Vigil,
    token: Option<&str>,
    message: AuthorizeRequest,
) -> Result<AuthorizeResponse, tonic::Status> {
    let mut client = vigil.client().await;
    client
        .authorize(with_token(token, message))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn hs256_tokens_identify_the_subject_and_refusals_are_audited() {
    // A subprocess: its log is checked for tokens too.
    let vigil = jwt_launch("--jwt-secret-file", "jwt/hs256.secret")
        .subprocess()
        .start();
    let key = hs256_key();

    // The subject comes from the token; the request may leave it empty.
    let alice = sign(Algorithm::HS256, &key, &claims("alice", &[]), None);
    let answer = authorize(&vigil, Some(&alice), request("", "crm.customers", "read"))
        .await
        .unwrap();
    assert!(answer.allowed, "{}", answer.reason);
    let answer = authorize(
        &vigil,
        Some(&alice),
        request("alice", "hr.employees", "read"),
    )
    .await
    .unwrap();
    assert!(!answer.allowed);

    // Roles from the token count in RBAC decisions.
    let etl = sign(
        Algorithm::HS256,
        &key,
        &claims("svc-etl", &["data_steward"]),
        None,
    );
    let answer = authorize(&vigil, Some(&etl), request("", "hr.employees", "read"))
        .await
        .unwrap();
    assert!(answer.allowed);
    assert_eq!(
        answer.reason,
        "allowed by policy.csv:38 [p, data_steward, hr.employees, read, allow] via svc-etl → data_steward"
    );
    let no_roles = sign(Algorithm::HS256, &key, &claims("svc-etl", &[]), None);
    assert!(
        !authorize(&vigil, Some(&no_roles), request("", "hr.employees", "read"))
            .await
            .unwrap()
            .allowed
    );

    let mut refusals = Vec::new();
    let mut expect = |case: &str, status: tonic::Status, code: Code, needle: &str| {
        assert_eq!(status.code(), code, "{case}: {}", status.message());
        assert!(
            status.message().contains(needle),
            "{case}: {:?} lacks {needle:?}",
            status.message()
        );
        refusals.push(case.to_owned());
    };

    let status = authorize(&vigil, None, request("alice", "crm.customers", "read"))
        .await
        .unwrap_err();
    expect(
        "missing",
        status,
        Code::Unauthenticated,
        "missing bearer token",
    );

    let status = authorize(
        &vigil,
        Some("not-a-jwt"),
        request("", "crm.customers", "read"),
    )
    .await
    .unwrap_err();
    expect(
        "malformed",
        status,
        Code::Unauthenticated,
        "malformed token",
    );

    let mut expired = claims("alice", &[]);
    expired["exp"] = json!(now() - 60);
    let token = sign(Algorithm::HS256, &key, &expired, None);
    let status = authorize(&vigil, Some(&token), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    expect("expired", status, Code::Unauthenticated, "expired");

    let mut early = claims("alice", &[]);
    early["nbf"] = json!(now() + 600);
    let token = sign(Algorithm::HS256, &key, &early, None);
    let status = authorize(&vigil, Some(&token), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    expect(
        "not yet valid",
        status,
        Code::Unauthenticated,
        "not valid yet",
    );

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("dave", &["admin"]).to_string())
    );
    let status = authorize(
        &vigil,
        Some(&unsigned),
        request("", "hr.employees", "delete"),
    )
    .await
    .unwrap_err();
    expect("alg none", status, Code::Unauthenticated, "alg \"none\"");

    let wrong_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-00"),
        &claims("alice", &[]),
        None,
    );
    let status = authorize(
        &vigil,
        Some(&wrong_key),
        request("", "crm.customers", "read"),
    )
    .await
    .unwrap_err();
    expect(
        "wrong key",
        status,
        Code::Unauthenticated,
        "signature does not verify",
    );

    let wrong_alg = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        &claims("alice", &[]),
        None,
    );
    let status = authorize(
        &vigil,
        Some(&wrong_alg),
        request("", "crm.customers", "read"),
    )
    .await
    .unwrap_err();
    expect(
        "wrong algorithm",
        status,
        Code::Unauthenticated,
        "algorithm RS256 is not accepted",
    );

    let mut other_issuer = claims("alice", &[]);
    other_issuer["iss"] = json!("https://evil.example.test");
    let token = sign(Algorithm::HS256, &key, &other_issuer, None);
    let status = authorize(&vigil, Some(&token), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    expect("issuer", status, Code::Unauthenticated, "issuer");

    let mut other_audience = claims("alice", &[]);
    other_audience["aud"] = json!("someone-else");
    let token = sign(Algorithm::HS256, &key, &other_audience, None);
    let status = authorize(&vigil, Some(&token), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    expect("audience", status, Code::Unauthenticated, "audience");

    let status = authorize(
        &vigil,
        Some(&alice),
        request("dave", "hr.employees", "delete"),
    )
    .await
    .unwrap_err();
    expect(
        "subject mismatch",
        status,
        Code::PermissionDenied,
        "differs from the token's subject",
    );

    let mut client = vigil.client().await;
    let batch = AuthorizeBatchRequest {
        requests: vec![
            request("", "crm.customers", "read"),
            request("bob", "crm.tickets", "write"),
        ],
    };
    let mut call = Request::new(batch);
    call.metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let status = client.authorize_batch(call).await.unwrap_err();
    expect(
        "batch subject mismatch",
        status,
        Code::PermissionDenied,
        "differs",
    );

    // Every refusal is in the audit log; no token is anywhere on disk or in the logs.
    let lines = audit_lines(&vigil.audit_dir);
    let failures = lines
        .iter()
        .filter(|(_, l)| l.contains("\"kind\":\"authn_failure\""))
        .count();
    assert_eq!(failures, refusals.len(), "{refusals:?}");
    let stderr = vigil.stderr();
    for token in [&alice, &etl, &wrong_key, &wrong_alg, &unsigned] {
        let signature = token.rsplit('.').next().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        for (_, line) in &lines {
            assert!(!line.contains(payload) && (signature.is_empty() || !line.contains(signature)));
        }
        assert!(!stderr.contains(payload), "token leaked into the logs");
    }
}

#[tokio::test]
async fn rs256_and_es256_public_keys_and_key_confusion() {
    let rsa = jwt_server("--jwt-public-key-file", "jwt/rsa-public.pem");
    let token = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        &claims("alice", &[]),
        None,
    );
    assert!(
        authorize(&rsa, Some(&token), request("", "crm.customers", "read"))
            .await
            .unwrap()
            .allowed
    );

    let other = sign(
        Algorithm::RS256,
        &rsa_key("other-rsa-private.pem"),
        &claims("alice", &[]),
        None,
    );
    let status = authorize(&rsa, Some(&other), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("signature does not verify"),
        "{}",
        status.message()
    );

    // Classic confusion attack: HS256 signed with the public key as secret.
    let public_pem = std::fs::read(fixture("jwt/rsa-public.pem")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims("dave", &["admin"]),
        None,
    );
    let status = authorize(&rsa, Some(&confused), request("", "hr.employees", "delete"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("algorithm HS256 is not accepted"),
        "{}",
        status.message()
    );

    let ec = jwt_server("--jwt-public-key-file", "jwt/ec-public.pem");
    let token = sign(Algorithm::ES256, &ec_key(), &claims("bob", &[]), None);
    assert!(
        authorize(&ec, Some(&token), request("", "crm.tickets", "write"))
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn jwks_keys_are_picked_by_kid() {
    let vigil = jwt_server("--jwks-file", "jwt/jwks.json");
    let rsa = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        &claims("alice", &[]),
        Some("rsa-1"),
    );
    assert!(
        authorize(&vigil, Some(&rsa), request("", "crm.customers", "read"))
            .await
            .unwrap()
            .allowed
    );
    let ec = sign(
        Algorithm::ES256,
        &ec_key(),
        &claims("bob", &[]),
        Some("ec-1"),
    );
    assert!(
        authorize(&vigil, Some(&ec), request("", "crm.tickets", "read"))
            .await
            .unwrap()
            .allowed
    );

    let unknown = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        &claims("alice", &[]),
        Some("rsa-9"),
    );
    let status = authorize(&vigil, Some(&unknown), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("key id"), "{}", status.message());
}

#[tokio::test]
async fn dev_token_and_jwt_mode_work_together_in_one_step() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--auth", "jwt"])
        .subprocess()
        .start();
    let output = vigil_command(
        &["token", "--subject", "svc-report", "--roles", "viewer"],
        vigil.dir.path(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let answer = authorize(
        &vigil,
        Some(token.trim()),
        request("", "reports.daily", "read"),
    )
    .await
    .unwrap();
    assert!(answer.allowed, "{}", answer.reason);
    assert!(vigil.stderr().contains("development secret"));
}

#[tokio::test]
async fn audit_service_is_for_admins_only() {
    use vigil::proto::{audit_client::AuditClient, ExportAuditRequest, VerifyAuditRequest};
    let vigil = jwt_server("--jwt-secret-file", "jwt/hs256.secret");
    let key = hs256_key();
    let alice = sign(Algorithm::HS256, &key, &claims("alice", &[]), None);
    authorize(&vigil, Some(&alice), request("", "crm.customers", "read"))
        .await
        .unwrap();

    let mut audit = AuditClient::new(vigil.channel().await);
    let export = |token: &str, subject: &str| {
        let mut call = Request::new(ExportAuditRequest {
            subject: subject.into(),
            ..Default::default()
        });
        call.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        call
    };
    let status = audit.export_audit(export(&alice, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("requires the admin role"));
    let status = audit
        .export_audit(Request::new(ExportAuditRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // dave is an admin by the policy; svc-ops by its token's roles.
    for admin in [claims("dave", &[]), claims("svc-ops", &["admin"])] {
        let token = sign(Algorithm::HS256, &key, &admin, None);
        let mut stream = audit
            .export_audit(export(&token, "alice"))
            .await
            .unwrap()
            .into_inner();
        let mut records = Vec::new();
        while let Some(record) = stream.message().await.unwrap() {
            if record.kind == "decision" {
                records.push(record);
            }
        }
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(
            (records[0].kind.as_str(), records[0].object.as_str()),
            ("decision", "crm.customers")
        );
        assert!(records[0]
            .raw
            .ends_with(&format!("\"hash\":\"{}\"}}", records[0].hash)));

        let mut call = Request::new(VerifyAuditRequest::default());
        call.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let report = audit.verify_audit(call).await.unwrap().into_inner();
        assert!(report.ok, "{}", report.error);
    }
    // Each admin call (granted or refused) is itself audited.
    let admin_records = audit_lines(&vigil.audit_dir)
        .iter()
        .filter(|(_, l)| l.contains("\"kind\":\"admin\""))
        .count();
    assert_eq!(admin_records, 5);
}

/// An unauthenticated flood cannot fill the disk: past a few per peer,
/// refusals are counted and their total recorded, and what a refused
/// caller claims is cut short.
#[tokio::test]
async fn a_flood_of_refusals_is_counted_not_recorded_one_by_one() {
    let vigil = jwt_server("--jwt-secret-file", "jwt/hs256.secret");
    let mut client = vigil.client().await;
    let claimed = "x".repeat(4000);
    for _ in 0..300 {
        let status = client
            .authorize(with_token(None, request(&claimed, "crm.customers", "read")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Decisions are never counted away.
    let alice = sign(Algorithm::HS256, &hs256_key(), &claims("alice", &[]), None);
    let answer = authorize(&vigil, Some(&alice), request("", "crm.customers", "read"))
        .await
        .unwrap();
    assert!(answer.allowed);

    let audit_dir = vigil.audit_dir.clone();
    drop(client);
    let (status, _, _dir) = vigil.terminate().await;
    assert!(status.success());
    let failures: Vec<Value> = audit_lines(&audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<Value>(&line).unwrap())
        .filter(|r| r["kind"] == "authn_failure")
        .collect();
    let individual: Vec<&Value> = failures
        .iter()
        .filter(|r| r["detail"]["aggregated"].is_null())
        .collect();
    let counted: u64 = failures
        .iter()
        .filter_map(|r| r["detail"]["aggregated"].as_u64())
        .sum();
    // 20 per peer and 10 s window are recorded one by one (a slow machine
    // may see a second window begin); the rest are counted.
    assert!(
        (20..=40).contains(&individual.len()),
        "recorded one by one: {}",
        individual.len()
    );
    assert!(counted >= 260, "counted: {counted}");
    assert_eq!(
        individual.len() as u64 + counted,
        300,
        "every refusal accounted for"
    );
    for record in &individual {
        let sub = record["sub"].as_str().unwrap();
        assert!(sub.len() < 120 && sub.contains("sha256"), "{sub}");
        assert_eq!(record["detail"]["peer"], "127.0.0.1");
    }
}

/// Identity providers rotate keys: a changed JWKS file is read again while
/// vigil runs.
#[tokio::test]
async fn a_rotated_jwks_file_is_picked_up() {
    let home = tempfile::tempdir().unwrap();
    let jwks = home.path().join("jwks.json");
    let original = std::fs::read_to_string(fixture("jwt/jwks.json")).unwrap();
    std::fs::write(&jwks, original.replace("\"rsa-1\"", "\"rsa-old\"")).unwrap();
    let vigil = Launch::new(repo_path("policies"))
        .args(["--auth", "jwt", "--jwks-file", jwks.to_str().unwrap()])
        .args(["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE])
        .start();
    let token = sign(
        Algorithm::RS256,
        &rsa_key("rsa-private.pem"),
        &claims("alice", &[]),
        Some("rsa-1"),
    );
    let status = authorize(&vigil, Some(&token), request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The provider publishes the new key set (written aside, renamed over).
    let staged = home.path().join("jwks.json.new");
    std::fs::write(&staged, &original).unwrap();
    std::fs::rename(&staged, &jwks).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match authorize(&vigil, Some(&token), request("", "crm.customers", "read")).await {
            Ok(answer) => {
                assert!(answer.allowed);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                assert!(
                    std::time::Instant::now() < deadline,
                    "the rotated key set was not picked up"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A roles claim counts only where it names roles of the policy: naming a
/// user (`alice`) hands out nothing.
#[tokio::test]
async fn token_roles_must_name_roles_of_the_policy() {
    let vigil = jwt_server("--jwt-secret-file", "jwt/hs256.secret");
    let key = hs256_key();
    let as_user = sign(Algorithm::HS256, &key, &claims("svc-x", &["alice"]), None);
    let answer = authorize(&vigil, Some(&as_user), request("", "crm.customers", "read"))
        .await
        .unwrap();
    assert!(!answer.allowed, "{}", answer.reason);
    let as_role = sign(Algorithm::HS256, &key, &claims("svc-x", &["analyst"]), None);
    let answer = authorize(&vigil, Some(&as_role), request("", "crm.customers", "read"))
        .await
        .unwrap();
    assert!(answer.allowed, "{}", answer.reason);
}
