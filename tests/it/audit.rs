//! The audit trail: verification after real traffic, tamper detection,
//! crash recovery under load.

use crate::common;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{audit_lines, repo_path, request, vigil_command, Launch, Vigil};

fn verify(audit_dir: &Path, extra: &[&str]) -> (bool, String) {
    let (code, text) = verify_exit(audit_dir, extra);
    (code == Some(0), text)
}

/// `vigil audit verify` on `audit_dir`: its exit code and everything it
/// printed.
fn verify_exit(audit_dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec![
        "audit",
        "verify",
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // Run beside the directory, which may be the missing one under test.
    let output = vigil_command(&args, audit_dir.parent().unwrap());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// A stopped server's audit dir after `decisions` Authorize calls, served
/// with `args` (rotation, retention): its scratch directory, the audit
/// directory and every receipt (`SEQ:HASH`).
async fn traffic_with(
    args: &[&str],
    decisions: usize,
) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    let vigil = Launch::new(repo_path("policies"))
        .args(args.iter().copied())
        .start();
    let mut client = vigil.client().await;
    let mut receipts = Vec::new();
    for _ in 0..decisions {
        let answer = client
            .authorize(request("alice", "crm.customers", "read"))
            .await
            .unwrap()
            .into_inner();
        receipts.push(format!("{}:{}", answer.audit_seq, answer.audit_hash));
    }
    drop(client);
    let audit_dir = vigil.audit_dir.clone();
    let (status, _, dir) = vigil.terminate().await;
    assert!(status.success());
    (dir, audit_dir, receipts)
}

/// A stopped server's audit dir with some real traffic in it.
async fn audited_traffic() -> (tempfile::TempDir, std::path::PathBuf, Vec<(u64, String)>) {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;
    let mut receipts = Vec::new();
    for (subject, object, action) in [
        ("alice", "crm.customers", "read"),
        ("bob", "crm.customers", "export"),
        ("carol", "hr.employees", "read"),
        ("frank", "finance.payments", "read"),
        ("erin", "reports.q3", "read"),
    ] {
        let answer = client
            .authorize(request(subject, object, action))
            .await
            .unwrap()
            .into_inner();
        receipts.push((answer.audit_seq, answer.audit_hash));
    }
    drop(client);
    let audit_dir = vigil.audit_dir.clone();
    let (status, _, dir) = vigil.terminate().await;
    assert!(status.success());
    (dir, audit_dir, receipts)
}

fn segment(audit_dir: &Path) -> std::path::PathBuf {
    audit_lines(audit_dir)[0].0.clone()
}

#[tokio::test]
async fn verify_passes_after_traffic_and_checks_receipts() {
    let (_dir, audit_dir, receipts) = audited_traffic().await;
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("ok: 7 records (seq 1..=7)"), "{text}");
    let (seq, hash) = &receipts[2];
    let (ok, text) = verify(&audit_dir, &["--receipt", &format!("{seq}:{hash}")]);
    assert!(ok, "{text}");
    let forged = format!("{seq}:{}", "0".repeat(64));
    let (ok, text) = verify(&audit_dir, &["--receipt", &forged]);
    assert!(!ok);
    assert!(text.contains("differs from the receipt"), "{text}");
    // An anchor beyond the end: the tail was cut.
    let (ok, text) = verify(&audit_dir, &["--anchor", &format!("99:{hash}")]);
    assert!(!ok);
    assert!(text.contains("truncated or rolled back"), "{text}");
}

#[tokio::test]
async fn any_single_byte_edit_is_detected() {
    let (_dir, audit_dir, _) = audited_traffic().await;
    let file = segment(&audit_dir);
    let original = std::fs::read(&file).unwrap();
    // Every byte of the third record, one at a time.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            original
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let (from, to) = (starts[2], starts[3]);
    for i in from..to {
        let mut tampered = original.clone();
        tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
        std::fs::write(&file, &tampered).unwrap();
        let (ok, text) = verify(&audit_dir, &[]);
        assert!(!ok, "edit at byte {i} went unnoticed");
        assert!(
            text.contains("line 3") || text.contains("line 4"),
            "byte {i}: {text}"
        );
    }
    std::fs::write(&file, &original).unwrap();
    assert!(verify(&audit_dir, &[]).0);
}

#[tokio::test]
async fn removed_and_reordered_records_are_detected() {
    let (_dir, audit_dir, _) = audited_traffic().await;
    let file = segment(&audit_dir);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let mut removed = lines.clone();
    removed.remove(3);
    std::fs::write(&file, removed.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(
        out.contains("line 4") && out.contains("expected seq 4, found 5"),
        "{out}"
    );

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    std::fs::write(&file, swapped.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(
        out.contains("line 3") && out.contains("expected seq 3, found 4"),
        "{out}"
    );

    // A record forged with a correct-looking hash of its own still breaks the chain.
    let mut forged: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    forged["allowed"] = serde_json::json!(true);
    let mut reencoded = lines.clone();
    let forged_line = forged.to_string();
    reencoded[4] = &forged_line;
    std::fs::write(&file, reencoded.join("\n") + "\n").unwrap();
    assert!(!verify(&audit_dir, &[]).0);
}

#[tokio::test]
async fn a_torn_tail_is_cut_recorded_and_the_chain_continues() {
    let (dir, audit_dir, _) = audited_traffic().await;
    let file = segment(&audit_dir);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"seq\":8,\"ts\":\"2026-");
    std::fs::write(&file, &bytes).unwrap();
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(text.contains("incomplete"), "{text}");

    let vigil = Vigil::restart(Launch::new(repo_path("policies")), dir);
    let mut client = vigil.client().await;
    let answer = client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    drop(client);
    let lines = audit_lines(&vigil.audit_dir);
    let kinds: Vec<String> = lines
        .iter()
        .map(|(_, l)| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(&kinds[7..], ["recovery", "startup", "decision"]);
    assert_eq!(answer.audit_seq, 10);
    let (status, _, _dir) = vigil.terminate().await;
    assert!(status.success());
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_decision() {
    sigkill_under_load(&[]).await;
}

/// `always` syncs each call alone; `off` never waits for the disk but must
/// still have every answered record in the kernel; one worker thread runs
/// the current-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_decision_in_every_sync_mode() {
    sigkill_under_load(&["--audit-sync", "always"]).await;
    sigkill_under_load(&["--audit-sync", "off", "--worker-threads", "1"]).await;
}

async fn sigkill_under_load(args: &[&str]) {
    let vigil = Launch::new(repo_path("policies"))
        .args(args.iter().copied())
        .subprocess()
        .start();
    let received = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let channel = vigil.channel().await;
        let received = received.clone();
        workers.push(tokio::spawn(async move {
            let mut client = vigil::proto::access_control_client::AccessControlClient::new(channel);
            for i in 0.. {
                let subject = ["alice", "bob", "carol", "frank"][(worker + i) % 4];
                match client
                    .authorize(request(subject, "crm.customers", "read"))
                    .await
                {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        received
                            .lock()
                            .unwrap()
                            .push((answer.audit_seq, answer.audit_hash));
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the load run, then pull the plug.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < 300 {
        assert!(
            workers.iter().any(|w| !w.is_finished()),
            "every worker stopped before 300 answers: {} received",
            received.lock().unwrap().len()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "only {} answers in 60 s",
            received.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = vigil.kill().await;
    for worker in workers {
        worker.await.unwrap();
    }
    let received = received.lock().unwrap().clone();

    let vigil = Vigil::restart(Launch::new(repo_path("policies")), dir);
    let audit_dir = vigil.audit_dir.clone();
    let (status, _, _dir) = vigil.terminate().await;
    assert!(status.success());
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(ok, "{text}");

    let mut on_disk = std::collections::HashMap::new();
    for (_, line) in audit_lines(&audit_dir) {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        let hash = vigil::audit::record::parse_hash(record["hash"].as_str().unwrap()).unwrap();
        on_disk.insert(record["seq"].as_u64().unwrap(), hex::encode(hash));
    }
    for (seq, hash) in &received {
        assert_eq!(
            on_disk.get(seq),
            Some(hash),
            "answered decision {seq} is missing from the log"
        );
    }
}

fn export(audit_dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "audit",
        "export",
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = vigil_command(&args, audit_dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn export_filters_and_the_python_verifier() {
    let (dir, audit_dir, _) = audited_traffic().await;
    let all = export(&audit_dir, &[]);
    assert_eq!(all.lines().count(), 7);

    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, &all).unwrap();
    let python = |file: &Path, extra: &[&str]| {
        std::process::Command::new("python3")
            .arg(repo_path("tests/verify_audit_chain.py"))
            .arg(file)
            .args(extra)
            .output()
            .expect("python3 runs the verifier")
    };
    let output = python(&path, &["--full"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tampered = all.replacen("\"allowed\":false", "\"allowed\":true", 1);
    std::fs::write(&path, tampered).unwrap();
    let output = python(&path, &["--full"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("hash mismatch"));

    let denied = export(&audit_dir, &["--allowed", "false"]);
    let subjects: Vec<String> = denied
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sub"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(subjects, ["bob", "frank"]);
    let carol = export(&audit_dir, &["--subject", "carol"]);
    assert_eq!(carol.lines().count(), 1);
    let from = export(&audit_dir, &["--from-seq", "5"]);
    assert_eq!(from.lines().count(), 3);
    // A contiguous slice still verifies on its own.
    std::fs::write(&path, &from).unwrap();
    assert!(python(&path, &[]).status.success());
    assert_eq!(
        export(&audit_dir, &["--since", "2000-01-01T00:00:00Z"])
            .lines()
            .count(),
        7
    );
    assert_eq!(
        export(&audit_dir, &["--until", "2000-01-01T00:00:00Z"])
            .lines()
            .count(),
        0
    );

    let csv = export(&audit_dir, &["--format", "csv", "--allowed", "true"]);
    let mut rows = csv.lines();
    assert_eq!(
        rows.next().unwrap(),
        "seq,ts,kind,id,sub,obj,act,dom,allowed,reason,pv,prev,hash"
    );
    let first = rows.next().unwrap();
    assert!(
        first.starts_with("2,") && first.contains(",alice,crm.customers,read,,true,"),
        "{first}"
    );

    let output = vigil_command(
        &[
            "audit",
            "export",
            "--audit-dir",
            audit_dir.to_str().unwrap(),
            "--since",
            "yesterday",
        ],
        &audit_dir,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("RFC 3339"));
}

#[tokio::test]
async fn hmac_attributes_and_subjects_never_reach_the_disk_in_clear() {
    let vigil = Launch::new(repo_path("tests/models/abac"))
        .args(["--audit-hmac-attributes", "owner", "--audit-hmac-subjects"])
        .start();
    let mut client = vigil.client().await;
    let mut req = request("carol-secret-subject", "orders", "read");
    req.attributes
        .insert("owner".into(), "carol-secret-subject".into());
    req.attributes.insert("region".into(), "us".into());
    assert!(client.authorize(req).await.unwrap().into_inner().allowed);
    drop(client);
    let audit_dir = vigil.audit_dir.clone();
    let (_, _, dir) = vigil.terminate().await;
    for entry in walk_files(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("carol-secret-subject"),
            "{} holds the clear value",
            entry.display()
        );
    }
    let lines = audit_lines(&audit_dir);
    let decision: serde_json::Value = serde_json::from_str(&lines[1].1).unwrap();
    assert_eq!(decision["attrs"]["region"], "us");
    assert!(decision["attrs"]["owner"]
        .as_str()
        .unwrap()
        .starts_with("hmac:"));
    assert_eq!(
        decision["sub"], decision["attrs"]["owner"],
        "same value, same digest"
    );
    // The export can still find the subject, given the key.
    let key = dir.path().join("audit-hmac.key");
    let found = export(
        &audit_dir,
        &[
            "--subject",
            "carol-secret-subject",
            "--hmac-key-file",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(found.lines().count(), 1);
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn rotation_retention_and_signed_checkpoints() {
    let (dir, audit_dir, _) = traffic_with(
        &[
            "--audit-rotate-bytes",
            "2000",
            "--audit-retain-segments",
            "3",
        ],
        60,
    )
    .await;
    let segments: Vec<_> = std::fs::read_dir(&audit_dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    assert!(segments.len() <= 4, "{segments:?}");
    assert!(
        !audit_dir.join("audit-000001.jsonl").exists(),
        "the oldest segments were pruned"
    );
    let public = dir.path().join("audit-signing.pub");
    let (ok, text) = verify(&audit_dir, &["--public-key", public.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("pruned: seq 1..="), "{text}");
    assert!(
        text.contains("signatures checked with the supplied public key"),
        "{text}"
    );
    let kinds: Vec<String> = audit_lines(&audit_dir)
        .iter()
        .map(|(_, l)| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(kinds.iter().any(|k| k == "prune"));

    // A key that did not sign the checkpoints is caught.
    let wrong = dir.path().join("wrong.pub");
    std::fs::write(&wrong, format!("{}\n", "11".repeat(32))).unwrap();
    let (ok, _) = verify(&audit_dir, &["--public-key", wrong.to_str().unwrap()]);
    assert!(!ok);

    // Cutting the tail behind the last checkpoint is caught without any anchor.
    let last = audit_lines(&audit_dir).last().unwrap().0.clone();
    let text = std::fs::read_to_string(&last).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&last, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(text.contains("truncated or rolled back"), "{text}");
}

#[tokio::test]
async fn foreign_files_and_missing_segments_are_named() {
    let (_dir, audit_dir, _) = audited_traffic().await;
    std::fs::write(audit_dir.join("notes.txt"), "hello").unwrap();
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(
        text.contains("notes.txt") && text.contains("did not write"),
        "{text}"
    );
    std::fs::remove_file(audit_dir.join("notes.txt")).unwrap();
    std::fs::write(audit_dir.join("audit-000003.jsonl"), "").unwrap();
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(!ok);
    assert!(
        text.contains("audit-000002.jsonl: segment missing"),
        "{text}"
    );
}

#[tokio::test]
async fn a_deleted_active_file_is_noticed_not_written_into_the_void() {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;
    client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap();
    std::fs::remove_file(vigil.audit_dir.join("audit-000001.jsonl")).unwrap();
    let answer = client
        .authorize(request("bob", "crm.tickets", "read"))
        .await
        .unwrap()
        .into_inner();
    let lines = audit_lines(&vigil.audit_dir);
    assert_eq!(lines[0].0.file_name().unwrap(), "audit-000002.jsonl");
    let note: serde_json::Value = serde_json::from_str(&lines[0].1).unwrap();
    assert_eq!(note["kind"], "audit_file_lost");
    let decision: serde_json::Value = serde_json::from_str(&lines[1].1).unwrap();
    assert_eq!(decision["seq"], answer.audit_seq);
}

#[tokio::test]
async fn a_disk_that_refuses_writes_fails_closed_and_health_follows() {
    use tonic_health::pb::health_client::HealthClient;
    // RLIMIT_FSIZE of 8 KiB: after a couple of dozen records every write fails.
    let mut launch = Launch::new(repo_path("policies"));
    launch.wrapper = vec![
        "prlimit".into(),
        "--fsize=8192:unlimited".into(),
        "--".into(),
    ];
    let vigil = launch.start();
    let mut client = vigil.client().await;
    let mut health = HealthClient::new(vigil.channel().await);
    let mut answered = Vec::new();
    let refusal = loop {
        match client
            .authorize(request("alice", "crm.customers", "read"))
            .await
        {
            Ok(answer) => answered.push(answer.into_inner().audit_seq),
            Err(status) => break status,
        }
        assert!(answered.len() < 100, "the size limit never bit");
    };
    assert_eq!(
        refusal.code(),
        tonic::Code::Unavailable,
        "{}",
        refusal.message()
    );
    assert!(
        refusal.message().contains("audit log cannot be written"),
        "{}",
        refusal.message()
    );
    // The caller learns what to do, not where the server keeps its files
    // or what the OS said.
    for internal in [
        vigil.dir.path().to_str().unwrap(),
        "audit-0000",
        ".jsonl",
        "os error",
    ] {
        assert!(
            !refusal.message().contains(internal),
            "{internal:?} leaked: {}",
            refusal.message()
        );
    }
    wait_for_health(&mut health, false, Duration::from_secs(5)).await;

    // Lift the limit: vigil notices by itself and serves again.
    let lifted = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &vigil.pid().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .unwrap();
    assert!(lifted.success());
    wait_for_health(&mut health, true, Duration::from_secs(10)).await;
    let after = client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap()
        .into_inner();
    answered.push(after.audit_seq);
    drop((client, health));
    let audit_dir = vigil.audit_dir.clone();
    let (status, _, _dir) = vigil.terminate().await;
    assert!(status.success());
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(ok, "{text}");
    let lines = audit_lines(&audit_dir);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|(_, l)| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for seq in &answered {
        assert!(
            seqs.contains(seq),
            "answered decision {seq} is not in the log"
        );
    }
    assert!(lines
        .iter()
        .any(|(_, l)| l.contains("\"kind\":\"audit_resumed\"")));
}

/// Polls the overall health until it is SERVING (or not), failing after
/// `limit`.
async fn wait_for_health(
    health: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    serving: bool,
    limit: Duration,
) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if (status == 1) == serving {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health did not become {} within {limit:?}",
            if serving { "SERVING" } else { "NOT_SERVING" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `vigil serve` on `audit_dir` (and its key home, `home`) that must refuse
/// to start: its exit and what it printed. Killed (and failed) if it
/// serves instead.
fn refused_start(home: &Path, audit_dir: &Path) -> String {
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--policies"])
        .arg(repo_path("policies"))
        .arg("--audit-dir")
        .arg(audit_dir)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let output = child.wait_with_output().unwrap();
            return String::from_utf8_lossy(&output.stderr).into_owned();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("vigil served on an audit log that lost history");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cut tail below a signed checkpoint, or a deleted checkpoints.jsonl,
/// stops start-up (someone holding the host and the signing key would
/// otherwise sign fresh checkpoints over the cut chain); with
/// --audit-accept-gap vigil starts, and a signed `gap` record says what was
/// lost, which verify reports.
#[tokio::test]
async fn lost_history_stops_start_up_until_acknowledged() {
    let (dir, audit_dir, _) = audited_traffic().await;
    let last = audit_lines(&audit_dir).last().unwrap().0.clone();
    let text = std::fs::read_to_string(&last).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&last, lines[..lines.len() - 2].join("\n") + "\n").unwrap();

    let refused = refused_start(dir.path(), &audit_dir);
    assert!(
        refused.contains("lost history")
            && refused.contains("signed checkpoint reaches seq 7")
            && refused.contains("--audit-accept-gap"),
        "{refused}"
    );

    let vigil = Vigil::restart(
        Launch::new(repo_path("policies")).arg("--audit-accept-gap"),
        dir,
    );
    let mut client = vigil.client().await;
    client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap();
    drop(client);
    let (status, _, dir) = vigil.terminate().await;
    assert!(status.success());
    let gap = audit_lines(&audit_dir)
        .into_iter()
        .map(|(_, l)| serde_json::from_str::<serde_json::Value>(&l).unwrap())
        .find(|r| r["kind"] == "gap")
        .expect("a gap record");
    assert_eq!(gap["seq"], 6, "{gap}");
    assert_eq!(gap["detail"]["checkpoints_beyond_head"][0]["seq"], 7);
    let public = dir.path().join("audit-signing.pub");
    let (ok, text) = verify(&audit_dir, &["--public-key", public.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("gap: at seq 6") && text.contains("cut or rolled back"),
        "{text}"
    );

    // A deleted checkpoints.jsonl is lost history too.
    std::fs::remove_file(audit_dir.join("checkpoints.jsonl")).unwrap();
    let refused = refused_start(dir.path(), &audit_dir);
    assert!(
        refused.contains("checkpoints.jsonl is missing"),
        "{refused}"
    );
}

/// Segments removed by hand are not retention: without the `prune` record
/// retention writes, verify fails (exit 1, tampering) even when a
/// checkpoint covers the cut; a missing directory is exit 2.
#[tokio::test]
async fn pruning_by_hand_and_a_missing_directory() {
    let (_dir, audit_dir, _) = traffic_with(&["--audit-rotate-bytes", "2000"], 40).await;
    let (ok, text) = verify(&audit_dir, &[]);
    assert!(ok, "{text}");

    std::fs::remove_file(audit_dir.join("audit-000001.jsonl")).unwrap();
    let (code, text) = verify_exit(&audit_dir, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no prune record"), "{text}");

    let (code, text) = verify_exit(&audit_dir.join("nowhere"), &[]);
    assert_eq!(code, Some(2), "{text}");
}

/// A receipt for a record retention removed is "cannot be checked" (exit
/// 3), whatever its hash, never "present".
#[tokio::test]
async fn receipts_for_records_retention_removed_cannot_be_checked() {
    let (_dir, audit_dir, receipts) = traffic_with(
        &[
            "--audit-rotate-bytes",
            "2000",
            "--audit-retain-segments",
            "2",
        ],
        60,
    )
    .await;
    let forged = format!(
        "{}:{}",
        receipts[0].split(':').next().unwrap(),
        "0".repeat(64)
    );
    for receipt in [&receipts[0], &forged] {
        let (code, text) = verify_exit(&audit_dir, &["--receipt", receipt]);
        assert_eq!(code, Some(3), "{text}");
        assert!(
            text.contains("cannot be checked: receipt") && !text.contains("present:"),
            "{text}"
        );
    }
    let (ok, text) = verify(&audit_dir, &["--receipt", receipts.last().unwrap()]);
    assert!(ok && text.contains("present: receipt"), "{text}");
}
