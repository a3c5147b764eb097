//! The audit witness against a real PostgreSQL (Debian's package, a
//! throwaway cluster started here): two sidecars shipping to one store, a
//! store outage under load, the attacks a host owner can make on its own
//! log caught by `--witness`, a fork recorded when rewritten history is
//! re-shipped, and retention held back until records are shipped.

use std::{path::Path, process::Command, time::Duration};

use vigil::proto::{access_control_client::AccessControlClient, AuthorizeRequest};
use vigil_e2e::{eventually, repo_root, require_prepared, vigil_binary, Background, Postgres};

/// A sidecar shipping `audit_dir` to `url` as `chain`.
fn sidecar(audit_dir: &Path, url: &str, chain: &str, extra: &str) -> (Background, String) {
    serve_shipping(
        audit_dir.parent().unwrap(),
        &audit_dir.display().to_string(),
        url,
        &format!("--ship-chain {chain} {extra}"),
    )
}

/// `vigil serve` in `home` with `--audit-dir` as typed, shipping to `url`.
fn serve_shipping(home: &Path, audit_dir: &str, url: &str, extra: &str) -> (Background, String) {
    let vigil = Background::start(
        &format!(
            "cd {home} && exec {binary} serve --policies {policies} --listen 127.0.0.1:0 \
             --audit-dir {audit_dir} --watch false --ship-to {url} {extra}",
            home = home.display(),
            binary = vigil_binary().display(),
            policies = repo_root().join("policies").display(),
        ),
        &[],
        "listening on ",
        Duration::from_secs(60),
    );
    let address = vigil.printed("listening on ").unwrap();
    (vigil, address)
}

/// `count` decisions; the last receipt's seq.
fn decide(address: &str, count: usize) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = AccessControlClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let mut last = 0;
        for i in 0..count {
            let subject = ["alice", "bob", "frank"][i % 3];
            let answer = client
                .authorize(AuthorizeRequest {
                    subject: subject.into(),
                    object: "crm.customers".into(),
                    action: "read".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            last = answer.audit_seq;
        }
        last
    })
}

fn vigil(args: &[&str]) -> (i32, String) {
    let output = Command::new(vigil_binary()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// Retention runs right after a checkpoint is signed: once one covers
/// `head`, a prune of segments would have happened.
fn wait_for_checkpoint_through(dir: &Path, head: u64) {
    eventually(
        "a checkpoint covers every decision",
        Duration::from_secs(30),
        || {
            let checkpoints = std::fs::read_to_string(dir.join("checkpoints.jsonl")).ok()?;
            let last: serde_json::Value = serde_json::from_str(checkpoints.lines().last()?).ok()?;
            (last["seq"].as_u64()? >= head).then_some(())
        },
    );
}

/// The audit segments in `dir`.
fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with("audit-"))
        .count()
}

/// The metrics address a sidecar started with `--metrics-listen` prints.
fn metrics_address(sidecar: &Background) -> String {
    eventually("the metrics address", Duration::from_secs(30), || {
        sidecar.printed("metrics listening on ")
    })
}

/// `/readyz` as it reads now (empty if it cannot be read).
fn readyz(metrics: &str) -> String {
    vigil_e2e::http_get(metrics, "/readyz")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// `vigil audit verify --witness` of the log in `dir`, for `chain` if given
/// (else the chain serve names by default).
fn verify_witness(dir: &Path, url: &str, chain: Option<&str>) -> (i32, String) {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["audit", "verify", "--audit-dir", dir, "--witness", url];
    if let Some(chain) = chain {
        args.extend(["--chain", chain]);
    }
    vigil(&args)
}

/// The witness's head of `chain`; 0 before the shipper created the schema.
fn stored_head(pg: &Postgres, chain: &str) -> u64 {
    pg.try_query(&format!(
        "SELECT head_seq FROM vigil_chains WHERE chain_id = '{chain}'"
    ))
    .ok()
    .and_then(|head| head.parse().ok())
    .unwrap_or(0)
}

#[test]
fn two_sidecars_ship_through_an_outage_and_verify_against_the_witness() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (
        scratch.path().join("a/audit"),
        scratch.path().join("b/audit"),
    );
    std::fs::create_dir_all(dir_a.parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir_b.parent().unwrap()).unwrap();
    let (a, address_a) = sidecar(&dir_a, &pg.url(), "host-a", "");
    let (b, address_b) = sidecar(&dir_b, &pg.url(), "host-b", "");
    let seq_a = decide(&address_a, 200);
    let seq_b = decide(&address_b, 120);
    eventually("both chains shipped", Duration::from_secs(30), || {
        (stored_head(&pg, "host-a") >= seq_a && stored_head(&pg, "host-b") >= seq_b).then_some(())
    });

    // An outage under load: answers keep coming, nothing is lost.
    pg.stop_server();
    let during = decide(&address_a, 300);
    pg.start_server();
    eventually(
        "the outage's records shipped",
        Duration::from_secs(60),
        || (stored_head(&pg, "host-a") >= during).then_some(()),
    );
    let decisions: u64 = pg
        .query("SELECT count(*) FROM vigil_decisions WHERE chain = 'host-a'")
        .parse()
        .unwrap();
    assert_eq!(decisions, 500, "one row per decision in the auditors' view");
    a.stop();
    b.stop();

    for (chain, dir) in [("host-a", &dir_a), ("host-b", &dir_b)] {
        let (code, text) = verify_witness(dir, &pg.url(), Some(chain));
        assert_eq!(code, 0, "{text}");
        let (code, text) = vigil(&["audit", "verify", "--from", &pg.url(), "--chain", chain]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("chained without gaps"), "{text}");
    }
    let (code, text) = vigil(&["audit", "fleet", "--from", &pg.url()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("host-a") && text.contains("host-b"), "{text}");

    // The host owner turns a denial into an allow on host-b, re-chains
    // every hash after it (as anyone with the files can) and drops the
    // checkpoints: the directory alone verifies, the witness does not.
    rewrite_first_denial(&dir_b);
    let (code, text) = vigil(&["audit", "verify", "--audit-dir", dir_b.to_str().unwrap()]);
    assert_eq!(code, 0, "the rewrite is invisible locally: {text}");
    let (code, text) = verify_witness(&dir_b, &pg.url(), Some("host-b"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("rewritten after shipping"), "{text}");

    // The host owner cuts the tail and removes the checkpoints that would
    // betray it: the directory alone verifies, the witness does not.
    let segment = dir_a.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&segment, lines[..lines.len() - 50].join("\n") + "\n").unwrap();
    std::fs::remove_file(dir_a.join("checkpoints.jsonl")).unwrap();
    let (code, text) = vigil(&["audit", "verify", "--audit-dir", dir_a.to_str().unwrap()]);
    assert_eq!(code, 0, "the cut is invisible locally: {text}");
    let (code, text) = verify_witness(&dir_a, &pg.url(), Some("host-a"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cut or rolled back"), "{text}");

    // Serving again on the cut log (acknowledged) re-ships different
    // history at seqs the witness holds: a fork, recorded, never written
    // over; the chain stops and the fleet view says so.
    let (a, address_a) = sidecar(&dir_a, &pg.url(), "host-a", "--audit-accept-gap");
    decide(&address_a, 60);
    eventually("the fork recorded", Duration::from_secs(30), || {
        (pg.query("SELECT count(*) FROM vigil_forks WHERE chain_id = 'host-a'") != "0")
            .then_some(())
    });
    a.stop();
    let (code, text) = vigil(&["audit", "fleet", "--from", &pg.url()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("STOPPED"), "{text}");
    let stored_kept: u64 = pg
        .query("SELECT count(*) FROM vigil_records WHERE chain_id = 'host-a'")
        .parse()
        .unwrap();
    assert!(stored_kept >= during, "nothing was overwritten or dropped");
    let fork_noted = std::fs::read_dir(&dir_a)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .any(|text| text.contains("\"kind\":\"witness_fork\""));
    assert!(fork_noted, "the fork is in the local audit log too");
}

/// Flips the first denial in `dir`'s first segment to an allow and
/// re-chains every record after it with the log's own encoder, then
/// removes the signed checkpoints: what an attacker holding the files does.
fn rewrite_first_denial(dir: &Path) {
    use vigil::audit::record;
    let segment = dir.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    let mut out = Vec::new();
    let mut previous: Option<record::Hash> = None;
    let mut rewriting = false;
    for line in text.lines() {
        let mut checked = record::decode(line.as_bytes()).unwrap().record;
        if !rewriting && checked.allowed == Some(false) {
            checked.allowed = Some(true);
            rewriting = true;
        }
        if !rewriting {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            previous = Some(record::check(line.as_bytes()).unwrap().hash);
            continue;
        }
        if let Some(previous) = previous {
            checked.prev = record::hash_text(&previous);
        }
        previous = Some(record::encode(&checked, &mut out));
    }
    assert!(rewriting, "a denial to rewrite");
    std::fs::write(&segment, out).unwrap();
    std::fs::remove_file(dir.join("checkpoints.jsonl")).unwrap();
}

#[test]
fn retention_never_prunes_what_the_witness_lacks() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("audit");
    pg.stop_server();
    let (vigil_process, address) = sidecar(
        &dir,
        &pg.url(),
        "host-r",
        "--audit-rotate-bytes 4000 --audit-retain-segments 1 --audit-checkpoint-every 100ms",
    );
    let head = decide(&address, 150);
    wait_for_checkpoint_through(&dir, head);
    assert!(
        segment_count(&dir) > 3,
        "with the witness down, nothing unshipped was pruned"
    );
    pg.start_server();
    let head = decide(&address, 5);
    eventually("shipped after the outage", Duration::from_secs(60), || {
        (stored_head(&pg, "host-r") >= head).then_some(())
    });
    assert!(dir.join("audit-000001.jsonl").exists());
    decide(&address, 60);
    eventually("pruned once shipped", Duration::from_secs(30), || {
        (!dir.join("audit-000001.jsonl").exists()).then_some(())
    });
    vigil_process.stop();
    let (code, text) = vigil(&["audit", "verify", "--from", &pg.url(), "--chain", "host-r"]);
    assert_eq!(code, 0, "{text}");
}

/// A witness store that lies about what it holds is a fork, recorded and
/// stopped, and nothing is pruned on its word; a NULL where vigil wrote a
/// seq is an error in words, never a dead shipper (issue 28, items 18, 19).
#[test]
fn a_lying_witness_is_a_fork_and_prunes_nothing() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("audit");
    let extra = "--metrics-listen 127.0.0.1:0 --audit-rotate-bytes 4000 \
                 --audit-retain-segments 1 --audit-checkpoint-every 100ms";
    let (first, address) = sidecar(&dir, &pg.url(), "host-l", extra);
    let head = decide(&address, 20);
    eventually("shipped", Duration::from_secs(60), || {
        (stored_head(&pg, "host-l") >= head).then_some(())
    });
    first.stop();

    // A NULL head: the restarted shipper says so and keeps trying; the
    // sidecar serves.
    pg.query("ALTER TABLE vigil_chains ALTER COLUMN head_seq DROP NOT NULL");
    pg.query("UPDATE vigil_chains SET head_seq = NULL WHERE chain_id = 'host-l'");
    let (second, address) = sidecar(&dir, &pg.url(), "host-l", extra);
    let metrics = metrics_address(&second);
    let ready = || readyz(&metrics);
    eventually("the NULL named in /readyz", Duration::from_secs(30), || {
        ready().contains("NULL or negative seq").then_some(())
    });
    assert!(
        ready()
            .lines()
            .filter(|l| l.starts_with("witness:"))
            .count()
            == 1,
        "one witness line: {}",
        ready()
    );
    decide(&address, 5);
    second.stop();

    // A head far past the log: a fork, and the unshipped segments stay.
    pg.query("UPDATE vigil_chains SET head_seq = 1000000000 WHERE chain_id = 'host-l'");
    let (third, address) = sidecar(&dir, &pg.url(), "host-l", extra);
    let head = decide(&address, 150);
    let metrics = metrics_address(&third);
    let ready = || readyz(&metrics);
    eventually("the lie is a fork", Duration::from_secs(30), || {
        ready().contains("witness: STOPPED").then_some(())
    });
    wait_for_checkpoint_through(&dir, head);
    let segments = segment_count(&dir);
    assert!(
        segments > 3,
        "segments the witness does not hold were pruned on its word ({segments} left)"
    );
    let forks = pg.query("SELECT count(*) FROM vigil_forks WHERE chain_id = 'host-l'");
    assert_ne!(forks.trim(), "0", "the fork is recorded centrally");
    third.stop();
}

/// While the store is away the lag keeps counting what was written and
/// not acknowledged, in /metrics and /readyz (issue 28, item 20).
#[test]
fn the_lag_counts_through_an_outage() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("audit");
    let (vigil_process, address) =
        sidecar(&dir, &pg.url(), "host-g", "--metrics-listen 127.0.0.1:0");
    let metrics = metrics_address(&vigil_process);
    let lag = || {
        let (_, text) = vigil_e2e::http_get(&metrics, "/metrics").ok()?;
        text.lines()
            .find(|l| l.starts_with("vigil_witness_lag_records "))?
            .rsplit(' ')
            .next()?
            .parse::<u64>()
            .ok()
    };
    let head = decide(&address, 5);
    eventually("shipped", Duration::from_secs(60), || {
        (stored_head(&pg, "host-g") >= head && lag() == Some(0)).then_some(())
    });
    pg.stop_server();
    decide(&address, 30);
    eventually(
        "the lag grows while the store is away",
        Duration::from_secs(30),
        || (lag()? >= 30).then_some(()),
    );
    let (_, ready) = vigil_e2e::http_get(&metrics, "/readyz").unwrap();
    assert!(!ready.contains("lag 0 record"), "{ready}");
    pg.start_server();
    eventually(
        "caught up after the outage",
        Duration::from_secs(60),
        || (lag()? == 0).then_some(()),
    );
    vigil_process.stop();
}

/// `verify --witness` compares what its message says, byte for byte: a
/// stored line edited without re-hashing it is caught there too, not only
/// by `--from` (issue 28, item 17).
#[test]
fn an_edited_line_at_the_witness_fails_verify_witness() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("audit");
    let (vigil_process, address) = sidecar(&dir, &pg.url(), "host-e", "");
    let head = decide(&address, 5);
    eventually("shipped", Duration::from_secs(60), || {
        (stored_head(&pg, "host-e") >= head).then_some(())
    });
    vigil_process.stop();
    let verify = || verify_witness(&dir, &pg.url(), Some("host-e"));
    let (code, text) = verify();
    assert_eq!(code, 0, "{text}");
    // A superuser edits a stored decision, leaving its hash as it was.
    pg.query(
        "UPDATE vigil_records SET line = replace(line, '\"read\"', '\"READ\"') \
         WHERE chain_id = 'host-e' AND kind = 'decision'",
    );
    let (code, text) = verify();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("edited at the witness"), "{text}");
}

/// The chain `serve` registers by default is the one `verify --witness`
/// looks up, however the directory was typed; a chain the store does not
/// know is exit 2, never "0 compared" and 0 (issue 28, items 16, 22).
#[test]
fn verify_finds_the_chain_serve_registered_and_refuses_an_unknown_one() {
    require_prepared();
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    // Typed relative, and not there yet when serve names its chain.
    let (serve, address) = serve_shipping(scratch.path(), "data/audit", &pg.url(), "");
    let head = decide(&address, 5);
    eventually("shipped", Duration::from_secs(60), || {
        let shipped = pg
            .try_query("SELECT max(head_seq) FROM vigil_chains")
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        (shipped >= head).then_some(())
    });
    serve.stop();
    let dir = scratch.path().join("data/audit");
    let (code, text) = verify_witness(&dir, &pg.url(), None);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains(" 0 compared"), "{text}");
    let (code, text) = verify_witness(&dir, &pg.url(), Some("no-such-chain"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not in the witness store"), "{text}");
}

/// A sidecar whose data directory was replaced (a new signing key) and
/// that asks to continue a chain with history is refused, and the refusal
/// is recorded where the fleet is watched (issue 28, item 21).
#[test]
fn a_replaced_data_directory_is_a_fork_the_fleet_sees() {
    require_prepared();
    let pg = Postgres::start();
    let first_home = tempfile::tempdir().unwrap();
    let (first, address) = sidecar(&first_home.path().join("audit"), &pg.url(), "host-w", "");
    let head = decide(&address, 5);
    eventually("shipped", Duration::from_secs(60), || {
        (stored_head(&pg, "host-w") >= head).then_some(())
    });
    first.stop();
    let (code, text) = vigil(&["audit", "fleet", "--from", &pg.url()]);
    assert_eq!(code, 0, "{text}");

    // The same chain id from a wiped host: another key.
    let wiped = tempfile::tempdir().unwrap();
    let (second, address) = sidecar(&wiped.path().join("audit"), &pg.url(), "host-w", "");
    decide(&address, 1);
    eventually(
        "the refusal recorded centrally",
        Duration::from_secs(30),
        || {
            let forks = pg
                .try_query("SELECT count(*) FROM vigil_forks WHERE chain_id = 'host-w'")
                .ok()?;
            (forks.trim() != "0").then_some(())
        },
    );
    second.stop();
    let (code, text) = vigil(&["audit", "fleet", "--from", &pg.url()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FORK"), "{text}");
}
