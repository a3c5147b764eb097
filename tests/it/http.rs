//! The HTTP/JSON API: the same calls as gRPC (identity, audit, errors),
//! and `GET /v1/check` mapping a gateway's subrequest to a decision.

use crate::common;

use common::{http_call as call, repo_path, Launch};

#[tokio::test]
async fn http_authorize_and_check_are_audited_decisions() {
    let scratch = tempfile::tempdir().unwrap();
    let config = common::datasets_config(scratch.path());
    let vigil = Launch::new(repo_path("policies"))
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .start();
    let http = vigil.http.clone().expect("an HTTP listener");

    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/authorize",
        &[],
        r#"{"subject":"alice","object":"crm.customers","action":"read"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["allowed"], true);
    assert!(answer["auditSeq"].as_str().unwrap().parse::<u64>().unwrap() > 0);

    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/authorize",
        &[],
        r#"{"subject":"alice"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("INVALID_ARGUMENT") || body.contains("InvalidArgument"),
        "{body}"
    );
    let (status, _, body) = call(&http, "POST", "/v1/authorize", &[], "not json").await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = call(&http, "POST", "/v1/authorize:batch", &[],
        r#"{"requests":[{"subject":"alice","object":"crm.customers","action":"read"},{"subject":"frank","object":"finance.payments","action":"read"}]}"#).await;
    assert_eq!(status, 200, "{body}");
    let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(batch["responses"][0]["allowed"], true);
    assert_eq!(batch["responses"][1]["allowed"], false);

    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        r#"{"subject":"bob","object":"crm.customers","records":[{"phone":"13812345678"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("138****5678"), "{body}");
    let (status, _, _) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        r#"{"subject":"frank","object":"hr.employees","records":[{"phone":"13812345678"}]}"#,
    )
    .await;
    assert_eq!(status, 403);

    // Card numbers of payments are encrypted for analysts; an admin opens
    // them over HTTP, the analyst may not.
    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        r#"{"subject":"alice","object":"finance.payments","records":[{"card_number":"4111 1111 1111 1111"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let masked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sealed = masked["records"][0]["card_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sealed.starts_with("vigil:v2:"), "{sealed}");
    let unmask = |subject: &str| {
        format!(r#"{{"subject":"{subject}","object":"finance.payments","values":["{sealed}"]}}"#)
    };
    let (status, _, body) = call(&http, "POST", "/v1/unmask", &[], &unmask("dave")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("4111 1111 1111 1111"), "{body}");
    let (status, _, body) = call(&http, "POST", "/v1/unmask", &[], &unmask("alice")).await;
    assert_eq!(status, 403, "{body}");

    let original = |uri: &'static str, user: Option<&'static str>| {
        let mut headers = vec![("X-Original-Method", "GET"), ("X-Original-URI", uri)];
        if let Some(user) = user {
            headers.push(("X-User", user));
        }
        headers
    };
    let (status, head, _) = call(
        &http,
        "GET",
        "/v1/check",
        &original("/v1/datasets/crm.customers/rows?limit=5", Some("alice")),
        "",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-vigil-decision-id:"),
        "{head}"
    );
    let (status, _, body) = call(
        &http,
        "GET",
        "/v1/check",
        &original("/v1/datasets/finance.payments/rows", Some("frank")),
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("decisionId") && !body.contains("policy.csv"),
        "{body}"
    );
    let (status, _, _) = call(
        &http,
        "GET",
        "/v1/check",
        &original("/v1/datasets/crm.customers/rows", None),
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = call(
        &http,
        "GET",
        "/v1/check",
        &original("/somewhere/else", Some("alice")),
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = call(&http, "GET", "/v1/check", &[("X-User", "alice")], "").await;
    assert_eq!(status, 400);

    // Every decision answered over HTTP is in the audit log.
    let decisions: Vec<serde_json::Value> = common::audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "decision")
        .collect();
    let objects: Vec<&str> = decisions.iter().filter_map(|r| r["obj"].as_str()).collect();
    for object in [
        "crm.customers",
        "finance.payments",
        "unmapped:/somewhere/else",
    ] {
        assert!(
            objects.contains(&object),
            "{object} not audited: {objects:?}"
        );
    }
    let (status, _, body) = call(&http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("vigil_decisions_total"),
        "the metrics ride along"
    );
}

/// One raw HTTP/1.1 exchange: the status.
async fn raw_status(address: &str, head: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The API answers programs on its own host: JSON only, no foreign
/// origin or host name, bodies within max_message_bytes as on gRPC.
#[tokio::test]
async fn http_api_admits_only_same_origin_json_within_limits() {
    let vigil = Launch::new(repo_path("policies"))
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--max-message-bytes",
            "65536",
        ])
        .start();
    let http = vigil.http.clone().expect("an HTTP listener");
    let mask = r#"{"subject":"bob","object":"crm.customers","records":[{"phone":"13812345678"}]}"#;
    let post =
        |host: &str, extra: &str| format!("POST /v1/mask HTTP/1.1\r\nHost: {host}\r\n{extra}");
    let json = "Content-Type: application/json\r\n";
    assert_eq!(raw_status(&http, &post(&http, json), mask).await, 200);
    assert_eq!(raw_status(&http, &post("localhost", json), mask).await, 200);
    // A form or text/plain POST (what a page may send anywhere): 415.
    for kind in ["text/plain", "application/x-www-form-urlencoded"] {
        let head = post(&http, &format!("Content-Type: {kind}\r\n"));
        assert_eq!(raw_status(&http, &head, mask).await, 415, "{kind}");
    }
    assert_eq!(raw_status(&http, &post(&http, ""), mask).await, 415);
    // A page of another origin, or a DNS name rebound to this address.
    let foreign = format!("{json}Origin: https://evil.example\r\n");
    assert_eq!(raw_status(&http, &post(&http, &foreign), mask).await, 403);
    assert_eq!(
        raw_status(&http, &post("evil.example", json), mask).await,
        403
    );
    assert_eq!(
        raw_status(&http, &post("evil.example:8080", json), mask).await,
        403
    );
    // max_message_bytes holds here as on gRPC.
    let big = format!(
        r#"{{"subject":"bob","object":"crm.customers","records":[{{"note":"{}"}}]}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(raw_status(&http, &post(&http, json), &big).await, 413);
}

/// Records over HTTP come back as gRPC returns them: keys in the order
/// sent, a repeated key kept with each copy masked, no number rounded
/// into digits in clear, nesting bounded.
#[tokio::test]
async fn http_records_keep_order_copies_and_digits() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--http-listen", "127.0.0.1:0"])
        .start();
    let http = vigil.http.clone().unwrap();
    let mask = |records: &str| {
        format!(r#"{{"subject":"bob","object":"crm.customers","records":[{records}]}}"#)
    };
    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        &mask(r#"{"phone":"13812345678","a":1,"phone":"13912345678"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let start = body.find(r#""records":[{"#).unwrap();
    let record = &body[start..start + body[start..].find("]").unwrap()];
    let phones: Vec<usize> = record.match_indices(r#""phone""#).map(|(i, _)| i).collect();
    assert_eq!(phones.len(), 2, "both copies kept: {record}");
    assert!(
        phones[0] < record.find(r#""a":1"#).unwrap(),
        "order kept: {record}"
    );
    assert!(
        record.contains("138****5678") && record.contains("139****5678"),
        "{record}"
    );

    // An 18-digit resident ID sent as a number: never returned rounded.
    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        &mask(r#"{"x":110101199003071233}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("110101199003071") && !body.contains("e+17"),
        "digits in clear: {body}"
    );
    // Past 64 bits the digits are gone before vigil sees them: refused.
    let (status, _, body) = call(
        &http,
        "POST",
        "/v1/mask",
        &[],
        &mask(r#"{"x":123456789012345678901234567890}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Deep nesting is refused, as on gRPC.
    let deep = format!("{}1{}", r#"{"a":"#.repeat(20_000), "}".repeat(20_000));
    let (status, _, body) = call(&http, "POST", "/v1/mask", &[], &mask(&deep)).await;
    assert_eq!(status, 400, "{body}");
}
