//! The shipped deployment files start vigil with arguments it accepts:
//! the Dockerfile's CMD, the Kubernetes sidecar's args (with the policies
//! of its ConfigMap) and the systemd unit's ExecStart, each run through
//! `vigil serve --check-config` with their paths moved under a scratch
//! directory.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::repo_path;

/// Paths of a production host, mapped into `scratch` (policies to `policies`).
fn rebase(arg: &str, scratch: &Path, policies: &Path) -> String {
    arg.replace("/etc/vigil/policies", &policies.display().to_string())
        .replace(
            "/var/lib/vigil",
            &scratch.join("state").display().to_string(),
        )
        .replace("/run/vigil", &scratch.join("run").display().to_string())
}

fn check_config(what: &str, args: &[String], policies: &Path, cwd: Option<&str>) {
    let scratch = tempfile::tempdir().unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|arg| rebase(arg, scratch.path(), policies))
        .collect();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "{what}: {args:?}"
    );
    let workdir = match cwd {
        Some(dir) => PathBuf::from(rebase(dir, scratch.path(), policies)),
        None => scratch.path().to_path_buf(),
    };
    std::fs::create_dir_all(&workdir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(&args)
        .arg("--check-config")
        .current_dir(&workdir)
        .env_remove("VIGIL_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what}: `vigil {}` --check-config failed:\n{text}",
        args.join(" ")
    );
    assert!(text.contains("configuration ok"), "{what}: {text}");
    // Checking touched nothing: no audit log, no socket.
    assert!(!scratch.path().join("state/audit").exists(), "{what}");
}

#[test]
fn the_dockerfile_command_is_accepted() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("CMD "))
        .expect("a CMD line");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec (JSON) form");
    let workdir = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("WORKDIR "))
        .filter(|dir| dir.starts_with("/var"));
    check_config("Dockerfile", &args, &repo_path("policies"), workdir);
}

#[test]
fn the_systemd_unit_command_is_accepted() {
    let unit = std::fs::read_to_string(repo_path("deploy/systemd/vigil.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace().map(str::to_owned);
    assert_eq!(words.next().as_deref(), Some("/usr/local/bin/vigil"));
    let workdir = unit
        .lines()
        .find_map(|line| line.strip_prefix("WorkingDirectory="));
    check_config(
        "systemd",
        &words.collect::<Vec<_>>(),
        &repo_path("policies"),
        workdir,
    );
}

/// The YAML of one Kubernetes manifest, read as far as the test needs: the
/// vigil container's `args` list and `workingDir`, and the ConfigMap's
/// files (block scalars).
struct Manifest {
    args: Vec<String>,
    working_dir: Option<String>,
    files: Vec<(String, String)>,
}

fn read_manifest(text: &str) -> Manifest {
    let lines: Vec<&str> = text.lines().collect();
    let mut files = Vec::new();
    let mut args = Vec::new();
    let mut working_dir = None;
    let mut index = 0;
    let mut in_vigil = false;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix(": |") {
            if name.ends_with(".conf") || name.ends_with(".csv") || name.ends_with(".toml") {
                let indent = line.len() - line.trim_start().len() + 2;
                let mut body = String::new();
                index += 1;
                while index < lines.len()
                    && (lines[index].trim().is_empty()
                        || lines[index].len() - lines[index].trim_start().len() >= indent)
                {
                    body.push_str(lines[index].get(indent..).unwrap_or(""));
                    body.push('\n');
                    index += 1;
                }
                files.push((name.to_owned(), body));
                continue;
            }
        }
        if trimmed.starts_with("- name: ") {
            in_vigil = trimmed == "- name: vigil";
        }
        if in_vigil {
            if let Some(dir) = trimmed.strip_prefix("workingDir: ") {
                working_dir = Some(dir.to_owned());
            }
            if trimmed == "args:" {
                index += 1;
                while let Some(item) = lines.get(index).and_then(|l| l.trim().strip_prefix("- ")) {
                    args.push(item.to_owned());
                    index += 1;
                }
                continue;
            }
        }
        index += 1;
    }
    Manifest {
        args,
        working_dir,
        files,
    }
}

#[test]
fn the_kubernetes_sidecar_is_accepted_with_its_configmap() {
    let text = std::fs::read_to_string(repo_path("deploy/kubernetes/vigil-sidecar.yaml")).unwrap();
    let manifest = read_manifest(&text);
    assert!(manifest.args.len() > 3, "{:?}", manifest.args);
    let names: Vec<&str> = manifest.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["model.conf", "policy.csv", "classification.toml"]);
    let policies = tempfile::tempdir().unwrap();
    for (name, body) in &manifest.files {
        std::fs::write(policies.path().join(name), body).unwrap();
    }
    check_config(
        "Kubernetes sidecar",
        &manifest.args,
        policies.path(),
        manifest.working_dir.as_deref(),
    );
}
