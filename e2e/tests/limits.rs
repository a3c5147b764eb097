//! Limits shared through a real Redis (Debian's package, started here):
//! two sidecars spend one budget and no more, a Redis restart under load
//! fails no call (rates fall back to each sidecar's share, reveal quotas
//! fail closed, health says degraded), and reveal quotas weaken values
//! exactly at the shared quota.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use vigil::{
    mask::{struct_from_json, struct_to_json},
    proto::{
        access_control_client::AccessControlClient, data_masking_client::DataMaskingClient,
        AuthorizeRequest, MaskRequest,
    },
};
use vigil_e2e::{
    audit_records, eventually, http_get, repo_root, require_prepared, vigil_binary, Background,
    Redis,
};

/// The example policies with `limits` as limits.toml.
fn policies_with(limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["model.conf", "policy.csv", "classification.toml"] {
        std::fs::copy(
            repo_root().join("policies").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("limits.toml"), limits).unwrap();
    dir
}

struct Sidecar {
    process: Background,
    grpc: String,
    metrics: String,
    home: tempfile::TempDir,
}

/// A sidecar keeping its limits in `redis`.
fn sidecar(policies: &Path, redis: &Redis) -> Sidecar {
    let home = tempfile::tempdir().unwrap();
    let process = Background::start(
        &format!(
            "cd {home} && exec {binary} serve --policies {policies} --listen 127.0.0.1:0 \
             --metrics-listen 127.0.0.1:0 --audit-dir {home}/audit --watch false \
             --limits-backend {url}",
            home = home.path().display(),
            binary = vigil_binary().display(),
            policies = policies.display(),
            url = redis.url(),
        ),
        &[],
        "listening on ",
        Duration::from_secs(60),
    );
    let grpc = process.printed("listening on ").unwrap();
    let metrics = eventually("the metrics address", Duration::from_secs(10), || {
        process.printed("metrics listening on ")
    });
    let sidecar = Sidecar {
        process,
        grpc,
        metrics,
        home,
    };
    sidecar.wait_until_shared();
    sidecar
}

impl Sidecar {
    fn ready_text(&self) -> String {
        http_get(&self.metrics, "/readyz")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    fn wait_until_shared(&self) {
        eventually("limits shared in Redis", Duration::from_secs(20), || {
            self.ready_text()
                .contains("limits: shared in")
                .then_some(())
        });
    }
}

/// The policy version a sidecar's metrics show.
fn policy_version(sidecar: &Sidecar) -> String {
    let (_, metrics) = http_get(&sidecar.metrics, "/metrics").unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_policy_info{version=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn read(subject: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        subject: subject.into(),
        object: "crm.customers".into(),
        action: "read".into(),
        ..Default::default()
    }
}

/// `calls` Authorize calls on each address at once: (allowed, limited,
/// failed) over all of them.
async fn hammer(addresses: &[String], subject: &str, calls: usize) -> (usize, usize, usize) {
    hammer_until(addresses, subject, calls, Arc::new(AtomicBool::new(true))).await
}

/// The same, going on past `calls` until `stop` is set.
async fn hammer_until(
    addresses: &[String],
    subject: &str,
    calls: usize,
    stop: Arc<AtomicBool>,
) -> (usize, usize, usize) {
    let mut tasks = Vec::new();
    for address in addresses {
        for _ in 0..4 {
            let address = address.clone();
            let subject = subject.to_owned();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = AccessControlClient::connect(format!("http://{address}"))
                    .await
                    .unwrap();
                let mut counts = (0, 0, 0);
                let mut made = 0;
                while made < calls / 4 || !stop.load(Ordering::Relaxed) {
                    made += 1;
                    match client.authorize(read(&subject)).await {
                        Ok(answer) if answer.get_ref().allowed => counts.0 += 1,
                        Ok(answer) => {
                            assert!(!answer.get_ref().limit.is_empty(), "{:?}", answer.get_ref());
                            counts.1 += 1
                        }
                        Err(_) => counts.2 += 1,
                    }
                }
                counts
            }));
        }
    }
    let mut total = (0, 0, 0);
    for task in tasks {
        let (a, l, f) = task.await.unwrap();
        total = (total.0 + a, total.1 + l, total.2 + f);
    }
    total
}

/// Denials the audit log of a sidecar's home attributes to `limit`.
fn audited_limit_denials(sidecar: &Sidecar, limit: &str) -> usize {
    audit_records(&sidecar.home.path().join("audit"))
        .iter()
        .filter(|record| record["detail"]["limit"] == limit && record["allowed"] == false)
        .count()
}

#[test]
fn two_sidecars_share_one_budget_and_no_more() {
    require_prepared();
    let redis = Redis::start();
    // 100 an hour per subject: nothing refills while the test runs but a
    // call every 36 s.
    let policies =
        policies_with("[[rate]]\nname = \"alice-reads\"\nsubject = \"alice\"\nrate = \"100/h\"\n");
    let a = sidecar(policies.path(), &redis);
    let b = sidecar(policies.path(), &redis);
    let (allowed, limited, failed) =
        runtime().block_on(hammer(&[a.grpc.clone(), b.grpc.clone()], "alice", 200));
    assert_eq!(failed, 0);
    assert!(
        (100..=101).contains(&allowed),
        "{allowed} allowed across two sidecars"
    );
    assert_eq!(allowed + limited, 400);
    // Both spent from the one budget, and every deny is audited where it
    // was answered.
    let denials =
        audited_limit_denials(&a, "alice-reads") + audited_limit_denials(&b, "alice-reads");
    assert_eq!(denials, limited);
    assert!(
        audited_limit_denials(&a, "alice-reads") > 0
            && audited_limit_denials(&b, "alice-reads") > 0
    );
    // Another subject is not limited.
    let (bob, _, _) = runtime().block_on(hammer(std::slice::from_ref(&a.grpc), "bob", 40));
    assert_eq!(bob, 40);

    // A reload changes the limit live on both: a changed rule is a budget
    // of its own, shared again.
    std::fs::write(
        policies.path().join("limits.toml"),
        "[[rate]]\nname = \"alice-reads\"\nsubject = \"alice\"\nrate = \"60/h\"\n",
    )
    .unwrap();
    for sidecar in [&a, &b] {
        let before = policy_version(sidecar);
        sidecar.process.signal("HUP");
        eventually("the reload", Duration::from_secs(20), || {
            (policy_version(sidecar) != before).then_some(())
        });
    }
    let (allowed, _, failed) =
        runtime().block_on(hammer(&[a.grpc.clone(), b.grpc.clone()], "alice", 100));
    assert_eq!(failed, 0);
    assert!(
        (60..=61).contains(&allowed),
        "{allowed} allowed after the reload"
    );
    a.process.stop();
    b.process.stop();
}

#[test]
fn a_redis_restart_under_load_fails_no_call() {
    require_prepared();
    let mut redis = Redis::start();
    let policies = policies_with(
        "[[rate]]\nname = \"alice-reads\"\nsubject = \"alice\"\nrate = \"100000/s\"\n\n\
         [[quota]]\nname = \"steward-phones\"\nrole = \"data_steward\"\nlabel = \"phone\"\nreveals = \"1000/h\"\n",
    );
    let a = sidecar(policies.path(), &redis);
    let runtime = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let address = a.grpc.clone();
        let stop = stop.clone();
        runtime.spawn(async move { hammer_until(&[address], "alice", 400, stop).await })
    };
    // The load is under way, through Redis, before Redis goes.
    let shared_checks = |a: &Sidecar| {
        let (_, metrics) = http_get(&a.metrics, "/metrics").unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("vigil_limit_checks_total{via=\"shared\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually("load checked in Redis", Duration::from_secs(30), || {
        (shared_checks(&a) > 50).then_some(())
    });
    redis.stop_server();
    eventually("health says degraded", Duration::from_secs(10), || {
        a.ready_text().contains("limits: degraded").then_some(())
    });
    // While Redis is away a reveal quota fails closed: no phone in clear.
    let masked = runtime.block_on(async {
        let mut client = DataMaskingClient::connect(format!("http://{}", a.grpc))
            .await
            .unwrap();
        client
            .mask(MaskRequest {
                subject: "carol".into(),
                object: "crm.customers".into(),
                records: vec![
                    struct_from_json(&serde_json::json!({ "phone": "13912345678" })).unwrap(),
                ],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    });
    let phone = struct_to_json(&masked.records[0])["phone"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(phone, "13912345678", "quotas fail closed");
    assert_eq!(masked.actions[0].quota, "steward-phones");
    let (_, metrics) = http_get(&a.metrics, "/metrics").unwrap();
    assert!(metrics.contains("vigil_limits_store_up 0"), "{metrics}");

    redis.start_server();
    a.wait_until_shared();
    // And carries on through Redis once it is back.
    let back = shared_checks(&a);
    eventually(
        "load checked in Redis again",
        Duration::from_secs(30),
        || (shared_checks(&a) > back + 50).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let (allowed, limited, failed) = runtime.block_on(load).unwrap();
    assert_eq!(failed, 0, "no call failed across the restart");
    assert!(
        allowed > 400 && limited == 0,
        "{allowed} allowed, {limited} limited"
    );
    let (_, metrics) = http_get(&a.metrics, "/metrics").unwrap();
    assert!(metrics.contains("vigil_limits_store_up 1"), "{metrics}");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("vigil_limit_checks_total{via=\"fallback\"}") && !l.ends_with(" 0")
        ),
        "the outage was answered by the fallback: {metrics}"
    );
    a.process.stop();
}

#[test]
fn shared_reveal_quotas_weaken_values_exactly_at_the_quota() {
    require_prepared();
    let redis = Redis::start();
    let policies = policies_with(
        "[[quota]]\nname = \"steward-phones\"\nrole = \"data_steward\"\nlabel = \"phone\"\nreveals = \"5/h\"\n",
    );
    let a = sidecar(policies.path(), &redis);
    let b = sidecar(policies.path(), &redis);
    let mask = |address: &str, count: usize| {
        runtime().block_on(async {
            let mut client = DataMaskingClient::connect(format!("http://{address}"))
                .await
                .unwrap();
            let records = (0..count)
                .map(|i| {
                    struct_from_json(&serde_json::json!({ "phone": format!("1391234567{i}") }))
                        .unwrap()
                })
                .collect();
            let answer = client
                .mask(MaskRequest {
                    subject: "carol".into(),
                    object: "crm.customers".into(),
                    records,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            answer
                .actions
                .iter()
                .map(|a| a.quota.is_empty() && a.treatment == "clear")
                .collect::<Vec<bool>>()
        })
    };
    assert_eq!(mask(&a.grpc, 3), [true, true, true]);
    assert_eq!(
        mask(&b.grpc, 3),
        [true, true, false],
        "the other sidecar spends the same quota"
    );
    assert_eq!(mask(&a.grpc, 2), [false, false]);
    a.process.stop();
    b.process.stop();
}
