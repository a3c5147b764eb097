//! `--metrics-listen`: what Prometheus scrapes counts exactly the calls
//! made, and never names a subject, object or value.

use crate::common;

use common::{repo_path, request, Launch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil::{
    mask::struct_from_json,
    proto::{data_masking_client::DataMaskingClient, MaskRequest},
};

/// One HTTP/1.1 GET, as a scraper sends it: (status line, body).
async fn get(address: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series `{series}` in:\n{exposition}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_every_call_and_name_no_one() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .start();
    let address = vigil.metrics.clone().expect("a metrics listener");
    let mut client = vigil.client().await;
    for _ in 0..7 {
        assert!(
            client
                .authorize(request("alice", "crm.customers", "read"))
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    for _ in 0..3 {
        assert!(
            !client
                .authorize(request("frank", "finance.payments", "read"))
                .await
                .unwrap()
                .into_inner()
                .allowed
        );
    }
    // Bad input: an error, not a decision.
    client
        .authorize(request("", "crm.customers", "read"))
        .await
        .unwrap_err();
    let mut masking = DataMaskingClient::new(vigil.channel().await);
    let record =
        struct_from_json(&serde_json::json!({"phone": "13812345678", "notes": "call 13987654321"}))
            .unwrap();
    masking
        .mask(MaskRequest {
            subject: "bob".into(),
            object: "crm.customers".into(),
            records: vec![record.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    // Refused by the policy: counted as a deny.
    masking
        .mask(MaskRequest {
            subject: "frank".into(),
            object: "hr.employees".into(),
            records: vec![record],
            ..Default::default()
        })
        .await
        .unwrap_err();

    let (status, text) = get(&address, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        value(
            &text,
            "vigil_decisions_total{rpc=\"Authorize\",result=\"allow\"}"
        ),
        7.0
    );
    assert_eq!(
        value(
            &text,
            "vigil_decisions_total{rpc=\"Authorize\",result=\"deny\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "vigil_decisions_total{rpc=\"Authorize\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "vigil_decisions_total{rpc=\"Mask\",result=\"allow\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "vigil_decisions_total{rpc=\"Mask\",result=\"deny\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "vigil_request_duration_seconds_count{rpc=\"Authorize\"}"
        ),
        11.0
    );
    assert_eq!(
        value(
            &text,
            "vigil_mask_fields_total{label=\"phone\",treatment=\"mask\"}"
        ),
        2.0
    );
    // Every audited record (start-up, 10 decisions, 2 Masks; the bad
    // request is refused before it is decided) has been appended.
    assert!(value(&text, "vigil_audit_records_total") >= 13.0, "{text}");
    assert!(value(&text, "vigil_audit_fsync_duration_seconds_count") >= 1.0);
    assert_eq!(value(&text, "vigil_audit_writable"), 1.0);
    assert!(value(&text, "vigil_audit_segments") >= 1.0);
    assert!(text.contains("vigil_policy_info{version=\""), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    for name in [
        "alice",
        "frank",
        "crm.customers",
        "13812345678",
        "138****5678",
    ] {
        assert!(
            !text.contains(name),
            "`{name}` appears in the metrics:\n{text}"
        );
    }

    let (status, _) = get(&address, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    let (status, body) = get(&address, "/readyz").await;
    assert!(status.contains("200"), "{status} {body}");
}
