//! Policy lifecycle: live reload (file change, SIGHUP, RPC), rejection of
//! broken sets, status, lint, policy tests, shadow evaluation and diff.

use crate::common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{audit_lines, repo_path, request, vigil_command, Launch, Vigil};
use vigil::proto::{
    access_control_client::AccessControlClient, policy_admin_client::PolicyAdminClient,
    GetPolicyStatusRequest, ReloadPoliciesRequest,
};

/// A private copy of the example policies that a test may edit.
fn policy_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["model.conf", "policy.csv", "policy_test.toml"] {
        std::fs::copy(repo_path("policies").join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn append(dir: &Path, line: &str) {
    let path = dir.join("policy.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(line);
    text.push('\n');
    // Write-then-rename, as editors and config management do.
    let temp = dir.join(".policy.csv.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(temp, path).unwrap();
}

async fn until_allowed(
    client: &mut AccessControlClient<tonic::transport::Channel>,
    subject: &str,
    object: &str,
    action: &str,
    want: bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = client
            .authorize(request(subject, object, action))
            .await
            .unwrap()
            .into_inner();
        if answer.allowed == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload after 10 s: {}",
            answer.reason
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(audit_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    audit_lines(audit_dir)
        .into_iter()
        .map(|(_, l)| serde_json::from_str::<serde_json::Value>(&l).unwrap())
        .filter(|r| r["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn a_changed_file_is_served_and_a_broken_one_rejected() {
    let policies = policy_copy();
    let vigil = Launch::new(policies.path()).with_admin().start();
    let mut client = vigil.client().await;
    let before = client
        .authorize(request("erin", "finance.payments", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(!before.allowed);

    append(policies.path(), "p, viewer, finance.payments, read, allow");
    let took = until_allowed(&mut client, "erin", "finance.payments", "read", true).await;
    eprintln!("file change served after {took:?}");
    let after = client
        .authorize(request("erin", "finance.payments", "read"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(after.policy_version, before.policy_version);

    // A broken set is rejected whole; the last good one keeps serving.
    append(policies.path(), "p, viewer, hr.employees");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kinds(&vigil.audit_dir, "reload")
        .iter()
        .all(|r| r["allowed"] != false)
    {
        assert!(
            Instant::now() < deadline,
            "the broken reload was never audited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still = client
        .authorize(request("erin", "finance.payments", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(still.allowed);
    assert_eq!(still.policy_version, after.policy_version);
    let failure = kinds(&vigil.audit_dir, "reload")
        .into_iter()
        .find(|r| r["allowed"] == false)
        .unwrap();
    assert!(
        failure["reason"].as_str().unwrap().contains("policy.csv:"),
        "{failure}"
    );

    let mut admin = PolicyAdminClient::new(vigil.admin_channel().await);
    let status = admin
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.policy_version, after.policy_version);
    assert!(
        status.last_reload_error.contains("policy.csv:"),
        "{}",
        status.last_reload_error
    );
    assert!(status.policy_rules > 10 && status.roles >= 5, "{status:?}");
    // The copy has no classification.toml.
    assert_eq!(status.classification_rules, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_reloads_all_succeed() {
    requests_during_reloads_all_succeed_with("0").await;
}

/// One worker thread selects the current-thread runtime, where the reload
/// builds the new set on a blocking thread through a runtime handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_reloads_all_succeed_on_one_thread() {
    requests_during_reloads_all_succeed_with("1").await;
}

async fn requests_during_reloads_all_succeed_with(worker_threads: &str) {
    let policies = policy_copy();
    let vigil = Launch::new(policies.path())
        .args(["--watch", "false", "--worker-threads", worker_threads])
        .with_admin()
        .start();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = AccessControlClient::new(vigil.channel().await);
        workers.push(tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..300 {
                let answer = client
                    .authorize(request("alice", "crm.customers", "read"))
                    .await
                    .expect("no request fails during a reload");
                assert!(answer.into_inner().allowed);
                answered += 1;
            }
            answered
        }));
    }
    let mut admin = PolicyAdminClient::new(vigil.admin_channel().await);
    for i in 0..10 {
        append(
            policies.path(),
            &format!("p, viewer, scratch.{i}, read, allow"),
        );
        let reply = admin
            .reload_policies(ReloadPoliciesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(reply.changed);
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    assert_eq!(total, 1200);
    let reloads = kinds(&vigil.audit_dir, "reload");
    assert_eq!(reloads.len(), 10);
    assert!(reloads
        .iter()
        .all(|r| r["detail"]["trigger"] == "rpc" && r["allowed"] == true));
}

#[tokio::test]
async fn sighup_reloads() {
    let policies = policy_copy();
    let vigil = Launch::new(policies.path())
        .args(["--watch", "false"])
        .subprocess()
        .start();
    let mut client = vigil.client().await;
    append(policies.path(), "p, viewer, finance.payments, read, allow");
    std::process::Command::new("kill")
        .arg("-HUP")
        .arg(vigil.pid().to_string())
        .status()
        .unwrap();
    until_allowed(&mut client, "erin", "finance.payments", "read", true).await;
    assert_eq!(
        kinds(&vigil.audit_dir, "reload")[0]["detail"]["trigger"],
        "sighup"
    );
}

#[tokio::test]
async fn shadow_policies_count_and_audit_divergences() {
    let candidate = policy_copy();
    append(candidate.path(), "p, contractor, crm.*, *, deny");
    let vigil = Launch::new(repo_path("policies"))
        .arg("--shadow-policies")
        .arg(candidate.path().to_str().unwrap())
        .with_admin()
        .start();
    let mut client = vigil.client().await;
    // frank (contractor) may read crm.customers live; the candidate would deny it.
    let live = client
        .authorize(request("frank", "reports.q3", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(live.allowed);
    let answer = client
        .authorize(request("bob", "crm.tickets", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed);
    let mut admin = PolicyAdminClient::new(vigil.admin_channel().await);
    let status = admin
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.shadow_divergences, 0);
    // The shipped classification: 10 path rules and 7 detectors.
    assert_eq!(status.classification_rules, 17);
    std::fs::write(
        candidate.path().join("policy.csv"),
        std::fs::read_to_string(candidate.path().join("policy.csv")).unwrap()
            + "p, support, crm.tickets, read, deny\n",
    )
    .unwrap();
    let reply = admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.changed, "the live policy did not change");
    let answer = client
        .authorize(request("bob", "crm.tickets", "read"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed, "the live decision is served");
    let status = admin
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.shadow_divergences, 1);
    let decision = kinds(&vigil.audit_dir, "decision")
        .into_iter()
        .find(|r| r["seq"] == answer.audit_seq)
        .unwrap();
    assert_eq!(decision["detail"]["shadow"]["allowed"], false);

    // Masking treatments are shadowed too: the candidate shows support
    // phone numbers in clear.
    std::fs::write(
        candidate.path().join("policy.csv"),
        std::fs::read_to_string(candidate.path().join("policy.csv")).unwrap()
            + "p, support, label:phone, see:clear, allow\n",
    )
    .unwrap();
    std::fs::copy(
        repo_path("policies/classification.toml"),
        candidate.path().join("classification.toml"),
    )
    .unwrap();
    admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap();
    use vigil::proto::{data_masking_client::DataMaskingClient, MaskRequest};
    let record = vigil::mask::struct_from_json(&serde_json::json!({"phone": "13812345678"}))
        .expect("an object");
    let mut masking = DataMaskingClient::new(vigil.channel().await);
    let masked = masking
        .mask(MaskRequest {
            subject: "bob".into(),
            object: "crm.customers".into(),
            records: vec![record],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        vigil::mask::struct_to_json(&masked.records[0])["phone"],
        "138****5678",
        "the live treatment is served"
    );
    let status = admin
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.shadow_divergences, 2);
    let mask_record = kinds(&vigil.audit_dir, "mask").pop().unwrap();
    assert_eq!(
        mask_record["detail"]["shadow"]["treatments"][0],
        serde_json::json!({"label": "phone", "live": "mask", "candidate": "clear"})
    );
}

#[tokio::test]
async fn policy_diff_replays_recorded_decisions() {
    let vigil = Vigil::example();
    let mut client = vigil.client().await;
    for (s, o, a) in [
        ("bob", "crm.tickets", "read"),
        ("alice", "crm.customers", "read"),
        ("bob", "crm.tickets", "read"),
    ] {
        client.authorize(request(s, o, a)).await.unwrap();
    }
    let candidate = policy_copy();
    append(candidate.path(), "p, support, crm.tickets, read, deny");
    let output = vigil_command(
        &[
            "policy",
            "diff",
            "--policies",
            repo_path("policies").to_str().unwrap(),
            "--candidate",
            candidate.path().to_str().unwrap(),
            "--from-audit",
            vigil.audit_dir.to_str().unwrap(),
        ],
        vigil.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("+ p, support, crm.tickets, read, deny"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bob read crm.tickets: allow -> deny"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("3 decision(s) replayed, 2 would change (2 allow -> deny, 0 deny -> allow)"),
        "{stdout}"
    );
}

fn run(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = vigil_command(args, dir.path());
    (
        output.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn policy_check_reports_each_kind_of_finding() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read_to_string(repo_path("policies/model.conf")).unwrap();
    std::fs::write(dir.path().join("model.conf"), &model).unwrap();
    // The findings below are the policy's; its data needs no masking.
    std::fs::write(
        dir.path().join("classification.toml"),
        "masking = \"off\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        "g, alice, analyst\np, analyst, crm.*, read, allow\np, analyst, crm.*, read, allow\n\
         g, bob, auditor\np, ghost, reports.*, read, allow\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("policy.csv:3: warning: duplicate of line 2"),
        "{out}"
    );
    assert!(out.contains("policy.csv:4: warning: role `auditor` is granted but neither it nor any role it inherits has a rule"), "{out}");
    assert!(
        out.contains("policy.csv:5: warning: `ghost` has rules but appears in no role grant"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("policy.csv"),
        "p, analyst, crm.*, read\nq, x, y\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("model.conf"),
        model.replace("[matchers]", "[matcher]"),
    )
    .unwrap();
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("model.conf:17: error: unknown section [matcher]"),
        "{out}"
    );

    std::fs::write(dir.path().join("model.conf"), &model).unwrap();
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "policy.csv:1: error: `p` rule has 3 field(s) but model.conf line 9 defines 4"
        ),
        "{out}"
    );
    assert!(
        out.contains("policy.csv:2: error: rule type `q` is not defined"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("policy.csv"),
        "p, analyst, crm.*, read, allow\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("model.conf"),
        model.replace("keyMatch(r.obj, p.obj)", "keyMatch(r.obj, p.obj"),
    )
    .unwrap();
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("model.conf:18: error: Failed to compile matcher 'm'"),
        "{out}"
    );
}

#[test]
fn policy_test_runs_the_shipped_cases_and_reports_failures() {
    for dir in ["policies", "policies/tenants"] {
        let (code, out) = run(&[
            "policy",
            "test",
            "--policies",
            repo_path(dir).to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(" passed, 0 failed"), "{out}");
    }
    let cases = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cases.path(),
        "[[case]]\nsubject = \"alice\"\nobject = \"hr.employees\"\naction = \"read\"\nexpect = \"allow\"\n\
         [[case]]\nname = \"fine\"\nsubject = \"alice\"\nobject = \"crm.x\"\naction = \"read\"\nexpect = \"allow\"\n\
         [[mask_case]]\nname = \"wrong mask\"\nsubject = \"bob\"\nobject = \"crm.customers\"\n\
         record = { phone = \"13812345678\" }\nexpect = { phone = \"13812345678\" }\ntreatments = { phone = \"clear\" }\n",
    )
    .unwrap();
    let (code, out) = run(&[
        "policy",
        "test",
        "--policies",
        repo_path("policies").to_str().unwrap(),
        "--cases",
        cases.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL #1: alice read hr.employees: expected allow, got deny: no policy rule allows alice to read hr.employees"), "{out}");
    assert!(
        out.contains("FAIL wrong mask: phone: expected \"13812345678\", got \"138****5678\"; phone: expected treatment clear, got mask"),
        "{out}"
    );
    assert!(out.contains("1 passed, 2 failed"), "{out}");
}

/// Authoring mistakes that used to change decisions silently are refused
/// with file:line, or named in the answer.
#[test]
fn policy_mistakes_are_refused_or_named() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.conf", "policy.csv", "classification.toml"] {
        std::fs::copy(repo_path("policies").join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().to_str().unwrap();
    append(dir.path(), "p, contractor, crm.*, *, dney");
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: effect `dney` is neither `allow` nor `deny`"),
        "{out}"
    );

    // Grants that look like grants and can never apply.
    let shipped = std::fs::read_to_string(repo_path("policies/policy.csv")).unwrap();
    std::fs::write(dir.path().join("policy.csv"), &shipped).unwrap();
    append(dir.path(), "p, support, label:diagnoses, see:clear, allow");
    append(dir.path(), "p, support, level:topsecret, see:clear, allow");
    append(dir.path(), "p, support, label:phone, see:plain, allow");
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    for finding in [
        "grant on label `diagnoses`",
        "grant on level `topsecret`",
        "`see:plain` is no visibility action",
    ] {
        assert!(out.contains(finding), "{finding}: {out}");
    }

    // A role cycle is refused, as Go Casbin refuses it, naming its lines.
    std::fs::write(dir.path().join("policy.csv"), &shipped).unwrap();
    append(dir.path(), "g, viewer, admin");
    let (code, out) = run(&["policy", "check", "--policies", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cycle detected: admin -> data_steward -> analyst -> viewer -> admin"),
        "{out}"
    );

    std::fs::write(dir.path().join("policy.csv"), &shipped).unwrap();
    let model = std::fs::read_to_string(repo_path("policies/model.conf")).unwrap();
    for (typo, named) in [
        ("keyMatc(r.obj, p.obj)", "calls `keyMatc`"),
        ("keyMatch(r.ob, p.obj)", "uses `r.ob`"),
    ] {
        std::fs::write(
            dir.path().join("model.conf"),
            model.replace("keyMatch(r.obj, p.obj)", typo),
        )
        .unwrap();
        let (code, out) = run(&["policy", "check", "--policies", path]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("model.conf:") && out.contains(named), "{out}");
        assert!(!out.contains("Error"), "engine debug text: {out}");
    }

    // A domain model asked without a domain says so.
    let tenants = repo_path("policies/tenants");
    let (code, out) = run(&[
        "check",
        "--policies",
        tenants.to_str().unwrap(),
        "--subject",
        "alice",
        "--object",
        "crm.customers",
        "--action",
        "read",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the request names none"), "{out}");
}

/// Kubernetes updates a mounted ConfigMap by writing a new directory and
/// renaming a `..data` symlink over the old one; the visible files are
/// symlinks through `..data`. vigil must see the new set (and only whole
/// sets), as it does for files edited in place.
#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded() {
    let mount = tempfile::tempdir().unwrap();
    let write_version = |name: &str, extra: &str| {
        let dir = mount.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for file in ["model.conf", "policy.csv", "classification.toml"] {
            std::fs::copy(repo_path("policies").join(file), dir.join(file)).unwrap();
        }
        if !extra.is_empty() {
            append(&dir, extra);
        }
    };
    write_version("..2026_11_29_10_00_00.1", "");
    std::os::unix::fs::symlink("..2026_11_29_10_00_00.1", mount.path().join("..data")).unwrap();
    for file in ["model.conf", "policy.csv", "classification.toml"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), mount.path().join(file)).unwrap();
    }
    let vigil = Launch::new(mount.path()).start();
    let mut client = vigil.client().await;
    until_allowed(&mut client, "erin", "finance.payments", "read", false).await;

    // The kubelet's update: new directory, `..data_tmp` → it, renamed over
    // `..data` (atomic), old directory removed.
    write_version(
        "..2026_11_29_10_05_00.2",
        "p, viewer, finance.payments, read, allow",
    );
    std::os::unix::fs::symlink("..2026_11_29_10_05_00.2", mount.path().join("..data_tmp")).unwrap();
    std::fs::rename(mount.path().join("..data_tmp"), mount.path().join("..data")).unwrap();
    std::fs::remove_dir_all(mount.path().join("..2026_11_29_10_00_00.1")).unwrap();

    until_allowed(&mut client, "erin", "finance.payments", "read", true).await;
    let reloads = kinds(&vigil.audit_dir, "reload");
    assert!(
        reloads
            .iter()
            .any(|r| r["detail"]["trigger"] == "file_change"),
        "{reloads:#?}"
    );
}
