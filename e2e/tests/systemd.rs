//! The shipped systemd unit passes `systemd-analyze verify` with no
//! complaint at all (an unknown or misspelt key is only a warning there,
//! so any output fails the test). `tests/it/deploy.rs` checks its command.

use std::process::Command;

use vigil_e2e::{repo_root, require_prepared};

#[test]
fn the_systemd_unit_verifies_cleanly() {
    require_prepared();
    let root = repo_root();
    let unit = std::fs::read_to_string(root.join("deploy/systemd/vigil.service")).unwrap();
    // verify checks that ExecStart's program exists: point it at the build.
    let binary = vigil_e2e::vigil_binary();
    assert!(binary.exists(), "scripts/e2e builds {}", binary.display());
    let unit = unit.replace("/usr/local/bin/vigil", &binary.display().to_string());
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("vigil.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (scripts/e2e installs systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "systemd-analyze verify: {text}");
    assert!(
        text.trim().is_empty(),
        "systemd-analyze verify complained:\n{text}"
    );
}
