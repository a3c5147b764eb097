//! Operator mistakes and hostile local users on the filesystem: one writer
//! per audit directory, no symlink followed, modes that keep the trail
//! private, sockets that replace only stale sockets, keyrings never made up
//! on the fly, CSV exports a spreadsheet will not run.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::{repo_path, request, vigil_command, Launch, Vigil};

fn serve_output(dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let policies = repo_path("policies");
    let mut args = vec![
        "serve",
        "--policies",
        policies.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    // Each of these must fail at start-up; a deadline keeps a regression
    // (a server that starts) from hanging the suite.
    let mut child = std::process::Command::new(common::BIN)
        .args(&args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("vigil serve {extra:?} started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_second_vigil_on_one_audit_directory_refuses_to_start() {
    let vigil = Vigil::example();
    let audit_dir = vigil.audit_dir.to_str().unwrap().to_owned();
    let (code, stderr) = serve_output(vigil.dir.path(), &["--audit-dir", &audit_dir]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(stderr.contains("--audit-dir"), "{stderr}");
    // The first one goes on, its chain intact.
    let mut client = vigil.client().await;
    client
        .authorize(request("alice", "crm.customers", "read"))
        .await
        .unwrap();
    let (status, _, _dir) = vigil.terminate().await;
    assert!(status.success(), "{status}");
}

#[test]
fn symlinks_in_the_audit_directory_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    std::fs::create_dir(&audit_dir).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious, no trailing newline").unwrap();
    std::os::unix::fs::symlink(&victim, audit_dir.join("audit-000001.jsonl")).unwrap();
    let (code, stderr) = serve_output(dir.path(), &["--audit-dir", audit_dir.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious, no trailing newline"
    );
}

#[tokio::test]
async fn audit_files_are_not_world_readable() {
    let vigil = Vigil::example();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&vigil.audit_dir), 0o750);
    for entry in std::fs::read_dir(&vigil.audit_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            mode(&path) & 0o007,
            0,
            "{} is world-accessible",
            path.display()
        );
    }
    vigil.terminate().await;
}

#[test]
fn a_unix_listener_replaces_only_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let listen = format!("unix:{}", path.display());
    let (code, stderr) = serve_output(
        dir.path(),
        &[
            "--listen",
            &listen,
            "--audit-dir",
            dir.path().join("audit").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn a_named_keyring_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_output(
        dir.path(),
        &[
            "--keyring",
            "keyrnig.json",
            "--audit-dir",
            dir.path().join("audit").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("keyrnig.json does not exist"), "{stderr}");
    assert!(stderr.contains("vigil keys generate"), "{stderr}");
    assert!(!dir.path().join("keyrnig.json").exists());
}

#[tokio::test]
async fn csv_export_does_not_hand_spreadsheets_formulas() {
    let vigil = Launch::new(repo_path("policies")).start();
    let mut client = vigil.client().await;
    for subject in [
        "=HYPERLINK(\"http://x\")",
        "+1+1",
        "-2",
        "@SUM(A1)",
        "alice",
    ] {
        client
            .authorize(request(subject, "crm.customers", "read"))
            .await
            .unwrap();
    }
    drop(client);
    let audit_dir = vigil.audit_dir.clone();
    let (_, _, _dir) = vigil.terminate().await;
    let output = vigil_command(
        &[
            "audit",
            "export",
            "--format",
            "csv",
            "--audit-dir",
            audit_dir.to_str().unwrap(),
        ],
        &audit_dir,
    );
    assert!(output.status.success());
    let csv = String::from_utf8(output.stdout).unwrap();
    let subjects: Vec<&str> = csv
        .lines()
        .filter(|l| l.contains(",decision,"))
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "\"'=HYPERLINK(\"\"http://x\"\")\"",
            "'+1+1",
            "'-2",
            "'@SUM(A1)",
            "alice"
        ]
    );
}

#[test]
fn a_missing_policy_directory_is_said_once_with_the_flag_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = vigil_command(
        &[
            "serve",
            "--policies",
            "no-such-dir",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--policies"), "{stderr}");
}
