//! Mask and Unmask over real gRPC: every treatment and detector, nested
//! paths and free text, visibility by role, denials, key rotation, audit
//! records without clear values, bad input.

use crate::common;

use common::{
    audit_lines, fixture, repo_path, vigil_command, vigil_command_with_input, Launch, Vigil,
};
use std::time::Duration;

use tonic::Code;
use vigil::{
    mask::{struct_from_json, struct_to_json},
    proto::{
        data_masking_client::DataMaskingClient, json::Struct, MaskRequest, MaskResponse,
        UnmaskRequest,
    },
};

fn record(json: serde_json::Value) -> Struct {
    struct_from_json(&json).expect("a record is a JSON object")
}

async fn mask(
    vigil: &Vigil,
    subject: &str,
    object: &str,
    records: Vec<serde_json::Value>,
) -> Result<MaskResponse, tonic::Status> {
    let mut client = DataMaskingClient::new(vigil.channel().await);
    client
        .mask(MaskRequest {
            subject: subject.into(),
            object: object.into(),
            records: records.into_iter().map(record).collect(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Unmask of single ciphertexts.
async fn unmask_values(
    vigil: &Vigil,
    subject: &str,
    object: &str,
    values: Vec<String>,
) -> Result<vigil::proto::UnmaskResponse, tonic::Status> {
    let mut client = DataMaskingClient::new(vigil.channel().await);
    client
        .unmask(UnmaskRequest {
            subject: subject.into(),
            object: object.into(),
            values,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn json(response: &MaskResponse, index: usize) -> serde_json::Value {
    struct_to_json(&response.records[index])
}

const CUSTOMER: &str = r#"{
    "name": "张三丰", "phone": "13812345678", "id_number": "11010519491231002X",
    "email": "zhang@example.com", "card_number": "4111 1111 1111 1111", "birth_date": "1949-12-31",
    "notes": "call 13987654321 or mail z@ex.com; badge EMP-123456; bad id 110105194912310021",
    "contacts": [{"mobile": "13700001111"}], "age": 41
}"#;

/// Answers leave a connection in waves gathered by `grpc::io`: many calls
/// at once, small answers and answers far over its 64 KiB buffer, each
/// must arrive whole and in its own call, on TCP and on a Unix socket.
#[tokio::test]
async fn waves_of_small_and_large_answers_arrive_whole() {
    let vigil = Launch::new(repo_path("policies")).with_unix().start();
    let customer: serde_json::Value = serde_json::from_str(CUSTOMER).unwrap();
    for channel in [vigil.channel().await, vigil.unix_channel().await] {
        let calls: Vec<_> = (0..48usize)
            .map(|call| {
                let mut client = DataMaskingClient::new(channel.clone());
                // 1, 10 or 150 records: ~1.4 KB, ~14 KB and ~210 KB answers.
                let count = [1, 10, 150][call % 3];
                let mut records = Vec::with_capacity(count);
                for index in 0..count {
                    let mut customer = customer.clone();
                    customer["age"] = serde_json::json!(call * 1000 + index);
                    records.push(record(customer));
                }
                tokio::spawn(async move {
                    let call_mask = client.mask(MaskRequest {
                        subject: "bob".into(),
                        object: "crm.customers".into(),
                        records,
                        ..Default::default()
                    });
                    // A stuck answer fails the test instead of hanging it.
                    let answer = tokio::time::timeout(Duration::from_secs(30), call_mask)
                        .await
                        .expect("every answer arrives")
                        .expect("mask")
                        .into_inner();
                    (call, count, answer)
                })
            })
            .collect();
        for call in calls {
            let (call, count, answer) = call.await.expect("task");
            assert_eq!(answer.records.len(), count, "call {call}");
            for (index, masked) in answer.records.iter().enumerate() {
                let out = struct_to_json(masked);
                assert_eq!(
                    out["age"],
                    call * 1000 + index,
                    "call {call} record {index}"
                );
                assert_eq!(out["phone"], "138****5678");
            }
        }
    }
}

#[tokio::test]
async fn each_role_sees_what_the_policy_grants() {
    let vigil = Vigil::example();
    let customer: serde_json::Value = serde_json::from_str(CUSTOMER).unwrap();

    // Support: phone and email masked in format, secrets redacted, names clear.
    let bob = mask(&vigil, "bob", "crm.customers", vec![customer.clone()])
        .await
        .unwrap();
    let out = json(&bob, 0);
    assert_eq!(out["phone"], "138****5678");
    assert_eq!(out["email"], "z***@example.com");
    assert_eq!(out["id_number"], "[REDACTED]");
    assert_eq!(out["card_number"], "[REDACTED]");
    assert_eq!(out["birth_date"], "1949");
    assert_eq!(out["name"], "张三丰");
    assert_eq!(out["contacts"][0]["mobile"], "137****1111");
    assert_eq!(out["age"], 41);
    let notes = out["notes"].as_str().unwrap();
    assert!(
        notes.starts_with("call 139****4321 or mail z***@ex.com; badge pn_"),
        "{notes}"
    );
    assert!(
        notes.ends_with("bad id 110105194912310021"),
        "an invalid checksum is not a resident id: {notes}"
    );

    // Analyst: confidential data as stable pseudonyms, joinable across calls.
    let alice = mask(
        &vigil,
        "alice",
        "crm.customers",
        vec![customer.clone(), customer.clone()],
    )
    .await
    .unwrap();
    let (first, second) = (json(&alice, 0), json(&alice, 1));
    assert!(first["phone"].as_str().unwrap().starts_with("pn_"));
    assert_eq!(first["phone"], second["phone"], "a pseudonym is a join key");
    assert_eq!(
        first["id_number"], "[REDACTED]",
        "no grant on secrets: the default"
    );

    // Data steward: confidential in clear, secrets masked; internal data in
    // clear through the analyst role it inherits.
    let carol = mask(&vigil, "carol", "crm.customers", vec![customer.clone()])
        .await
        .unwrap();
    let out = json(&carol, 0);
    assert_eq!(out["phone"], "13812345678");
    assert_eq!(out["id_number"], "110***********002X");
    assert_eq!(out["card_number"], "4111 **** **** 1111");
    assert!(
        out["notes"].as_str().unwrap().contains("badge EMP-123456"),
        "{}",
        out["notes"]
    );
    let action = carol
        .actions
        .iter()
        .find(|a| a.path == "id_number")
        .unwrap();
    assert_eq!(
        (action.label.as_str(), action.treatment.as_str()),
        ("resident_id", "mask")
    );
    assert!(
        action.rule.contains("classification.toml:") && action.rule.contains("see:masked"),
        "{}",
        action.rule
    );

    // No read permission on the object: nothing comes back.
    let status = mask(&vigil, "erin", "crm.customers", vec![customer.clone()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The audit trail names fields and treatments, never the values.
    let lines = audit_lines(&vigil.audit_dir);
    let masks: Vec<&String> = lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.contains("\"kind\":\"mask\""))
        .collect();
    assert_eq!(masks.len(), 4);
    for line in &masks {
        for secret in [
            "13812345678",
            "11010519491231002X",
            "zhang@example.com",
            "4111 1111 1111 1111",
            "13987654321",
            "张三丰",
        ] {
            assert!(!line.contains(secret), "{secret} leaked into {line}");
        }
    }
    assert!(
        masks[0].contains(
            "{\"count\":1,\"label\":\"phone\",\"path\":\"phone\",\"treatment\":\"mask\"}"
        ),
        "{}",
        masks[0]
    );
    let denied: serde_json::Value = serde_json::from_str(masks[3]).unwrap();
    assert_eq!(denied["allowed"], false);
}

#[tokio::test]
async fn every_treatment_and_unmask() {
    let vigil = Launch::new(fixture("masking")).start();
    let input = serde_json::json!({
        "secret": "launch codes", "token": "tok-42", "internal_only": "x", "nullme": "y",
        "dob": "1990-03-07", "income": 52345, "code": "ABCDEFGH", "motto": "hello",
        "profile": {"contacts": [{"phone": "13812345678"}, {"phone": "13900000000"}]},
        "free": "ip 10.1.2.3 badge B-1234 card 4111111111111111",
        "only_in_other": "visible here"
    });
    let alice = mask(
        &vigil,
        "alice",
        "ds.people",
        vec![input.clone(), input.clone()],
    )
    .await
    .unwrap();
    let (out, again) = (json(&alice, 0), json(&alice, 1));
    let secret = out["secret"].as_str().unwrap();
    assert!(secret.starts_with("vigil:v2:k1:"), "{secret}");
    assert_ne!(out["secret"], again["secret"], "random nonces");
    let token = out["token"].as_str().unwrap();
    assert!(token.starts_with("vigil:v2d:k1:"));
    assert_eq!(
        out["token"], again["token"],
        "deterministic encryption joins"
    );
    assert!(out.get("internal_only").is_none(), "dropped");
    assert_eq!(out["nullme"], serde_json::Value::Null);
    assert_eq!(out["dob"], "1990-03");
    assert_eq!(out["income"], "52000-52999");
    assert_eq!(out["code"], "AB****GH");
    assert_eq!(out["motto"], "hello");
    assert_eq!(
        out["only_in_other"], "visible here",
        "rules scoped to other objects do not apply"
    );
    assert_eq!(out["profile"]["contacts"][1]["phone"], "139****0000");
    let free = out["free"].as_str().unwrap();
    assert!(
        free.starts_with("ip 10.1.*.* badge pn_") && free.ends_with("card [REDACTED]"),
        "{free}"
    );

    // Unmask: the steward may see every label in clear; alice may not.
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let opened = client
        .unmask(UnmaskRequest {
            subject: "sam".into(),
            object: "ds.people".into(),
            values: vec![secret.to_owned(), token.to_owned()],
            records: vec![alice.records[0].clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.values, ["launch codes", "tok-42"]);
    assert_eq!(struct_to_json(&opened.records[0])["secret"], "launch codes");
    assert!(opened.audit_seq > 0);
    let status = unmask_values(&vigil, "alice", "ds.people", vec![secret.to_owned()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("may not see:clear label secret_note"),
        "{}",
        status.message()
    );

    // Bad ciphertexts.
    let mut tampered = secret.as_bytes().to_vec();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (text, code) in [
        (tampered.as_str(), Code::InvalidArgument),
        ("vigil:v2:k1:!!!!", Code::InvalidArgument),
        (
            &secret.replacen(":k1:", ":k7:", 1)[..],
            Code::FailedPrecondition,
        ),
    ] {
        let status = unmask_values(&vigil, "sam", "ds.people", vec![text.to_owned()])
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{text}: {}", status.message());
        assert!(!status.message().contains("launch codes"));
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_ciphertexts_readable() {
    let vigil = Launch::new(fixture("masking")).start();
    let before = mask(
        &vigil,
        "alice",
        "ds.x",
        vec![serde_json::json!({"secret": "s1"})],
    )
    .await
    .unwrap();
    let old = json(&before, 0)["secret"].as_str().unwrap().to_owned();
    drop(before);
    let (status, _, dir) = vigil.terminate().await;
    assert!(status.success());
    let keyring = dir.path().join("vigil-data/keyring.json");
    let rotated = vigil_command(
        &["keys", "rotate", "--keyring", keyring.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("key k2 now encrypts"));

    let vigil = Vigil::restart(Launch::new(fixture("masking")), dir);
    let after = mask(
        &vigil,
        "alice",
        "ds.x",
        vec![serde_json::json!({"secret": "s2"})],
    )
    .await
    .unwrap();
    assert!(json(&after, 0)["secret"]
        .as_str()
        .unwrap()
        .starts_with("vigil:v2:k2:"));
    let opened = unmask_values(&vigil, "sam", "ds.x", vec![old.clone()])
        .await
        .unwrap();
    assert_eq!(opened.values, ["s1"]);

    // Rewrap moves old ciphertexts to the active key.
    let keyring = vigil.dir.path().join("vigil-data/keyring.json");
    let output = vigil_command_with_input(
        &["keys", "rewrap", "--keyring", keyring.to_str().unwrap()],
        vigil.dir.path(),
        &format!("{{\"secret\":\"{old}\"}}\n"),
    );
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rewrapped = line["secret"].as_str().unwrap();
    assert!(rewrapped.starts_with("vigil:v2:k2:"), "{rewrapped}");
    let opened = unmask_values(&vigil, "sam", "ds.x", vec![rewrapped.to_owned()])
        .await
        .unwrap();
    assert_eq!(opened.values, ["s1"]);
}

/// Unmask records as it answers: kind `unmask`, with `allowed`.
fn unmask_records(vigil: &Vigil) -> Vec<serde_json::Value> {
    audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "unmask")
        .collect()
}

/// A ciphertext opens only for the domain and object it was masked for;
/// every attempt, forged or foreign, is audited with the envelope's object.
#[tokio::test]
async fn ciphertexts_open_only_where_they_were_sealed() {
    let vigil = Launch::new(fixture("masking")).start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let masked = client
        .mask(MaskRequest {
            subject: "alice".into(),
            object: "ds.people".into(),
            domain: "acme".into(),
            records: vec![record(serde_json::json!({"secret": "launch codes"}))],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let secret = json(&masked, 0)["secret"].as_str().unwrap().to_owned();
    let unmask = |object: &str, domain: &str, value: &str| UnmaskRequest {
        subject: "sam".into(),
        object: object.into(),
        domain: domain.into(),
        values: vec![value.to_owned()],
        ..Default::default()
    };
    let opened = client
        .unmask(unmask("ds.people", "acme", &secret))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.values, ["launch codes"]);
    for (object, domain) in [
        ("ds.payroll", "acme"),
        ("ds.people", "globex"),
        ("ds.people", ""),
    ] {
        let status = client
            .unmask(unmask(object, domain, &secret))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{object} {domain}");
        assert!(
            status
                .message()
                .contains("sealed for another domain or object"),
            "{}",
            status.message()
        );
        assert!(!status.message().contains("launch codes"));
    }
    let forged = secret.replacen(":k1:", ":k1:A", 1);
    let status = client
        .unmask(unmask("ds.people", "acme", &forged))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());

    let records = unmask_records(&vigil);
    assert_eq!(records.len(), 5, "every attempt is audited: {records:#?}");
    assert_eq!(records[0]["allowed"], true);
    for refused in &records[1..4] {
        assert_eq!(refused["allowed"], false);
        assert_eq!(refused["detail"]["sealed_for"]["obj"], "ds.people");
        assert_eq!(refused["detail"]["sealed_for"]["dom"], "acme");
    }
    assert_eq!(records[4]["allowed"], false);
    assert!(records[4]["reason"]
        .as_str()
        .unwrap()
        .starts_with("ciphertext refused"));
}

/// Ciphertexts made before envelopes were bound keep opening; `keys
/// rewrap --object` binds them to where they belong.
#[tokio::test]
async fn legacy_ciphertexts_open_and_rewrap_binds_them() {
    let home = tempfile::tempdir().unwrap();
    let keyring = home.path().join("keyring.json");
    std::fs::copy(fixture("legacy/keyring.json"), &keyring).unwrap();
    let legacy = std::fs::read_to_string(fixture("legacy/ciphertext-v1.txt")).unwrap();
    let legacy = legacy.trim();
    let vigil = Launch::new(fixture("masking"))
        .args(["--keyring", keyring.to_str().unwrap()])
        .start();
    let opened = unmask_values(&vigil, "sam", "ds.x", vec![legacy.to_owned()])
        .await
        .unwrap();
    assert_eq!(opened.values, ["legacy s0"]);

    let output = vigil_command_with_input(
        &[
            "keys",
            "rewrap",
            "--keyring",
            keyring.to_str().unwrap(),
            "--object",
            "ds.x",
        ],
        home.path(),
        &format!("{{\"secret\":\"{legacy}\"}}\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let bound = line["secret"].as_str().unwrap();
    assert!(bound.starts_with("vigil:v2:k1:"), "{bound}");
    let opened = unmask_values(&vigil, "sam", "ds.x", vec![bound.to_owned()])
        .await
        .unwrap();
    assert_eq!(opened.values, ["legacy s0"]);
    let status = unmask_values(&vigil, "sam", "ds.y", vec![bound.to_owned()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn bad_records_get_clear_errors() {
    let vigil = Launch::new(fixture("masking"))
        .args(["--max-depth", "4", "--max-batch-items", "3"])
        .start();
    let deep = serde_json::json!({"a": {"b": {"c": {"d": {"e": "13812345678"}}}}});
    let status = mask(&vigil, "alice", "ds.x", vec![deep]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("deeper than 4 levels at a.b.c.d"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("1381234"));
    let status = mask(&vigil, "alice", "ds.x", vec![serde_json::json!({}); 4])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let status = mask(&vigil, "alice", "", vec![serde_json::json!({})])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// Hostile callers allowed to read one object: every string of the call is
/// size-checked, attributes are counted, and one call's work is bounded.
#[tokio::test]
async fn one_call_cannot_ask_for_unbounded_work() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--max-mask-values", "1000", "--max-attributes", "8"])
        .start();
    let mut client = DataMaskingClient::new(vigil.channel().await);
    let call = |domain: String, attributes: usize, records: Vec<serde_json::Value>| MaskRequest {
        subject: "bob".into(),
        object: "crm.customers".into(),
        domain,
        attributes: (0..attributes)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect(),
        records: records.into_iter().map(record).collect(),
    };
    let one = || vec![serde_json::json!({"phone": "13812345678"})];

    let status = client
        .mask(call("d".repeat(1 << 20), 0, one()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().contains("domain"), "{}", status.message());

    let status = client
        .mask(call(String::new(), 9, one()))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_attributes"),
        "{}",
        status.message()
    );

    // 2,000 numbers in one string: past the call's budget of 1,000 values.
    let text = "13812345678 ".repeat(2_000);
    let status = client
        .mask(call(
            String::new(),
            0,
            vec![serde_json::json!({ "notes": text })],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("max_mask_values"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("1381234"),
        "{}",
        status.message()
    );

    // Within the budget every one of them is found and masked.
    let text = "13812345678 ".repeat(300);
    let answer = client
        .mask(call(
            String::new(),
            0,
            vec![serde_json::json!({ "notes": text })],
        ))
        .await
        .unwrap()
        .into_inner();
    let notes = json(&answer, 0)["notes"].as_str().unwrap().to_owned();
    assert!(!notes.contains("13812345678"), "{notes}");
    assert_eq!(notes.matches("138****5678").count(), 300);
}

/// A labelled value with a multi-byte character where a byte offset would
/// cut: answered and masked, never a panic with the value in the log.
#[tokio::test]
async fn multi_byte_values_are_masked_not_a_panic() {
    let vigil = Launch::new(repo_path("policies")).start();
    let answer = mask(
        &vigil,
        "bob",
        "crm.customers",
        vec![serde_json::json!({
            "phone": "电1234567890",
            "mobile": "139-1234-5678",
            "contacts": [{"phone": "电13912345678"}],
        })],
    )
    .await
    .unwrap();
    let masked = json(&answer, 0);
    // Ten digits are no mobile number: redacted, never shown by position.
    assert_eq!(masked["phone"], "[REDACTED]");
    assert_eq!(masked["mobile"], "139-****-5678");
    assert_eq!(masked["contacts"][0]["phone"], "电139****5678");
}

/// Runs `vigil mask` as the support role over `input` (JSONL).
fn mask_cli(input: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    vigil_command_with_input(
        &[
            "mask",
            "--policies",
            policies.to_str().unwrap(),
            "--subject",
            "bob",
            "--object",
            "crm.customers",
        ],
        dir.path(),
        input,
    )
}

#[test]
fn mask_cli_streams_jsonl() {
    let customer: serde_json::Value = serde_json::from_str(CUSTOMER).unwrap();
    let output = mask_cli(&format!(
        "{}\n{}\n",
        customer,
        serde_json::json!({"phone": "13900000000"})
    ));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["phone"], "139****0000");

    // A bad record is named and left out; the rest of the stream goes on.
    let output = mask_cli("[1,2]\nnot json\n{\"phone\": \"13900000000\"}\n");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1: a record must be a JSON object; record left out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 2: not JSON; record left out"),
        "{stderr}"
    );
    assert!(stderr.contains("2 record(s) left out"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim(), r#"{"phone":"139****0000"}"#);
}

mod property {
    use proptest::prelude::*;

    use super::*;

    fn resident_id(seed: u32) -> String {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let body = format!(
            "110105{}{:02}{:02}{:03}",
            1950 + seed % 50,
            1 + seed % 12,
            1 + seed % 28,
            seed % 1000
        );
        let sum: u32 = body
            .bytes()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
    }

    fn card(seed: u64) -> String {
        let body = format!("622202{:09}", seed % 1_000_000_000);
        let digits: Vec<u32> = body.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                if i % 2 == 0 {
                    let v = d * 2;
                    if v > 9 {
                        v - 9
                    } else {
                        v
                    }
                } else {
                    d
                }
            })
            .sum();
        format!("{body}{}", (10 - sum % 10) % 10)
    }

    fn sensitive() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..1_000_000).prop_map(resident_id),
            any::<u64>().prop_map(card),
            (3u8..=9, 0u32..100_000_000).prop_map(|(p, n)| format!("1{p}{n:09}")),
            "[a-z]{1,8}".prop_map(|user| format!("{user}@corp.example.com")),
        ]
    }

    fn record_with(secrets: &[String], shape: &[u8]) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for (i, (secret, how)) in secrets.iter().zip(shape.iter().cycle()).enumerate() {
            let value = match how % 3 {
                0 => serde_json::Value::String(secret.clone()),
                1 => serde_json::Value::String(format!("note {i}: please call {secret} today")),
                _ => serde_json::json!([{ "deep": { "v": secret } }]),
            };
            root.insert(format!("f{i}"), value);
        }
        serde_json::Value::Object(root)
    }

    /// A secret where real text puts it: next to other numbers, after a
    /// country prefix, in CJK punctuation, across lines, two at once, in a
    /// labelled field with extra text, as an object key, as a JSON number,
    /// deep in lists.
    fn hostile(secret: &str, other: &str, how: u8) -> serde_json::Value {
        let digits_only = secret.bytes().all(|b| b.is_ascii_digit());
        match how % 10 {
            0 => serde_json::json!({ "notes": format!("bed 12 {secret}") }),
            1 => serde_json::json!({ "notes": format!("{secret} 2x daily") }),
            2 => serde_json::json!({ "notes": format!("{secret} {other}") }),
            3 => serde_json::json!({ "notes": format!("电话：{secret}。请回电") }),
            4 => serde_json::json!({ "notes": format!("line one\n{secret}\nline three") }),
            5 => serde_json::json!({ "phone": format!("{secret} (home)") }),
            6 => serde_json::json!({ "by_value": { secret: { "visits": 3 } } }),
            7 if digits_only && secret.len() <= 15 => {
                serde_json::json!({ "n": secret.parse::<u64>().unwrap() })
            }
            8 => serde_json::json!({ "a": [[{ "b": [{ "c": format!("ref {secret}") }] }]] }),
            _ => serde_json::json!({ "notes": format!("+86 {secret}, also 0086 {other}") }),
        }
    }

    /// Every run of 8 consecutive digits of a numeric secret.
    fn digit_windows(secret: &str) -> Vec<String> {
        let digits: String = secret.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 8 {
            return Vec::new();
        }
        (0..=digits.len() - 8)
            .map(|i| digits[i..i + 8].to_owned())
            .collect()
    }

    fn mask_with(
        visibility: impl FnMut(&vigil::mask::Label) -> vigil::mask::Grant,
        input: serde_json::Value,
    ) -> serde_json::Value {
        let policy = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(vigil::policy::PolicySet::load(&repo_path("policies")))
            .unwrap();
        let keys = vigil::keys::Keyring::generate();
        let mut masker = vigil::mask::Masker::new(
            &policy.classification,
            "crm.customers",
            &keys,
            visibility,
            32,
        );
        let mut rec = record(input);
        let mut actions = Vec::new();
        masker.mask(0, &mut rec, &mut actions).unwrap();
        let out = struct_to_json(&rec);
        for action in &actions {
            assert!(
                !action.path.chars().any(|c| c.is_ascii_digit()) || action.path.contains(".."),
                "a field action names a value: {}",
                action.path
            );
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Without grants, no generated value comes back in hostile
        /// context: not in clear, and not as 8 consecutive digits of it.
        #[test]
        fn hostile_contexts_leak_nothing(secret in sensitive(), other in sensitive(), how in any::<u8>()) {
            let input = hostile(&secret, &other, how);
            let out = mask_with(|_| None, input.clone()).to_string();
            for value in [&secret, &other] {
                if !input.to_string().contains(value.as_str()) {
                    continue;
                }
                prop_assert!(!out.contains(value.as_str()), "{} survived in {}", value, out);
                for window in digit_windows(value) {
                    prop_assert!(!out.contains(&window), "{} of {} survived in {}", window, value, out);
                }
            }
        }

        /// With `see:clear` on every label nothing is changed: detection
        /// never over-redacts what a subject may see.
        #[test]
        fn clear_grants_change_nothing(secret in sensitive(), other in sensitive(), how in any::<u8>()) {
            let input = hostile(&secret, &other, how);
            let clear = |_: &vigil::mask::Label| Some((vigil::mask::Treatment::Clear, "granted".to_owned()));
            prop_assert_eq!(mask_with(clear, input.clone()), input);
        }

        /// A subject without grants never receives any detected value in clear.
        #[test]
        fn no_grant_no_clear_values(secrets in proptest::collection::vec(sensitive(), 1..6), shape in proptest::collection::vec(any::<u8>(), 1..6)) {
            let policy = tokio::runtime::Builder::new_current_thread().build().unwrap()
                .block_on(vigil::policy::PolicySet::load(&repo_path("policies"))).unwrap();
            let keys = vigil::keys::Keyring::generate();
            let visibility = |_: &vigil::mask::Label| None;
            let mut masker = vigil::mask::Masker::new(&policy.classification, "crm.customers", &keys, visibility, 32);
            let mut rec = record(record_with(&secrets, &shape));
            let mut actions = Vec::new();
            masker.mask(0, &mut rec, &mut actions).unwrap();
            let out = struct_to_json(&rec).to_string();
            for secret in &secrets {
                prop_assert!(!out.contains(secret.as_str()), "{} survived in {}", secret, out);
            }
        }
    }
}

/// A policy directory whose classification is missing or empty cannot
/// mask: Mask fails closed naming the file, and `policy check` says so,
/// unless the directory states `masking = "off"`.
#[tokio::test]
async fn masking_fails_closed_without_a_classification() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.conf", "policy.csv"] {
        std::fs::copy(repo_path("policies").join(file), dir.path().join(file)).unwrap();
    }
    let vigil = Launch::new(dir.path()).start();
    let status = mask(
        &vigil,
        "bob",
        "crm.customers",
        vec![serde_json::json!({"phone": "13812345678"})],
    )
    .await
    .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("classification.toml is missing"),
        "{}",
        status.message()
    );
    // Authorize is unaffected.
    let mut client = vigil.client().await;
    assert!(
        client
            .authorize(common::request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    let check = vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("classification.toml"));
    drop(client);
    drop(vigil);

    std::fs::write(
        dir.path().join("classification.toml"),
        "masking = \"off\"\n",
    )
    .unwrap();
    let vigil = Launch::new(dir.path()).start();
    let answer = mask(
        &vigil,
        "bob",
        "crm.customers",
        vec![serde_json::json!({"phone": "13812345678"})],
    )
    .await
    .unwrap();
    assert_eq!(
        json(&answer, 0)["phone"],
        "13812345678",
        "masking is off, as stated"
    );
    let check = vigil_command(
        &[
            "policy",
            "check",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Data quality: each labelled field says whether it is a valid value of
/// its label's format; the audit counts invalid values per label (never
/// the values); `vigil mask --report` totals a file.
#[tokio::test]
async fn labelled_fields_report_whether_they_are_valid() {
    let vigil = Vigil::example();
    let answer = mask(
        &vigil,
        "bob",
        "crm.customers",
        vec![serde_json::json!({
            "phone": "13812345678",
            "mobile": "1381234567",
            "id_number": "110105194912310021",
            "notes": "call 13987654321",
        })],
    )
    .await
    .unwrap();
    let validity = |path: &str| {
        answer
            .actions
            .iter()
            .find(|a| a.path.starts_with(path))
            .map(|a| a.validity.clone())
            .unwrap_or_else(|| panic!("no action at {path}: {:?}", answer.actions))
    };
    assert_eq!(validity("phone"), "valid");
    assert_eq!(validity("mobile"), "invalid");
    assert_eq!(validity("id_number"), "invalid");
    assert_eq!(validity("notes["), "valid");
    let record = audit_lines(&vigil.audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .find(|r| r["kind"] == "mask")
        .unwrap();
    assert_eq!(record["detail"]["invalid"]["phone"], 1);
    assert_eq!(record["detail"]["invalid"]["resident_id"], 1);
    assert!(!record.to_string().contains("1381234567"));

    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    let output = vigil_command_with_input(
        &[
            "mask",
            "--policies",
            policies.to_str().unwrap(),
            "--subject",
            "bob",
            "--object",
            "crm.customers",
            "--report",
        ],
        dir.path(),
        "{\"phone\":\"13812345678\"}\n{\"phone\":\"1381234567\"}\n",
    );
    assert!(output.status.success());
    let report = String::from_utf8(output.stdout).unwrap();
    let phone: Vec<&str> = report
        .lines()
        .find(|l| l.starts_with("phone"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(phone, ["phone", "2", "1", "1"], "{report}");
    assert!(!report.contains("1381234567"));
}

/// Any record deeper than the limit is INVALID_ARGUMENT naming where, at
/// any depth: past max_depth the masker says so, past protobuf's own limit
/// the decoder does; never INTERNAL.
#[tokio::test]
async fn too_deep_is_invalid_argument_naming_where_at_any_depth() {
    let vigil = Vigil::example();
    for depth in [33, 40, 60, 200] {
        let mut value = serde_json::json!("13812345678");
        for _ in 0..depth {
            value = serde_json::json!({ "level": value });
        }
        let status = mask(&vigil, "bob", "crm.customers", vec![value])
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{depth}: {}",
            status.message()
        );
        assert!(
            status.message().contains("level.level.level"),
            "{depth}: {}",
            status.message()
        );
        assert!(
            !status.message().contains("1381234"),
            "{}",
            status.message()
        );
    }
}

/// A flattened key that spells a labelled path is that path: `**.phone`
/// and `customer.id_card`-style rules meet `{"contact.phone": …}` too.
#[tokio::test]
async fn a_key_spelling_a_path_is_that_path() {
    let vigil = Vigil::example();
    // No detector finds an address: only the path rule `**.home_address`
    // can label it, flattened or not.
    let record = serde_json::json!({
        "contact.home_address": "1 Main Street",
        "contact": { "home_address": "2 Main Street" },
        "a.b.c.home_address": ["3 Main Street"],
    });
    let answer = mask(&vigil, "bob", "crm.customers", vec![record])
        .await
        .unwrap();
    let shown = format!("{:?}", answer.records);
    assert!(!shown.contains("Main Street"), "in clear: {shown}");
    let mut paths: Vec<&str> = answer
        .actions
        .iter()
        .filter(|a| a.label == "address")
        .map(|a| a.path.as_str())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "a.b.c.home_address",
            "contact.home_address",
            "contact.home_address"
        ],
        "{paths:?}"
    );
}
