//! A real Prometheus (Debian's package, started here on a temporary port
//! and directory) scrapes vigil under load: its decision counter equals the
//! calls made, the latency histogram is filled, and it loads vigil's
//! alerting rules, which promtool accepts.

use std::{process::Command, time::Duration};

use vigil::proto::{access_control_client::AccessControlClient, AuthorizeRequest};
use vigil_e2e::{
    eventually, free_port, http_get, query_escape, repo_root, require_prepared, Background,
};

const RULES: &str = "deploy/prometheus/vigil-alerts.yml";

#[test]
fn promtool_accepts_the_alerting_rules() {
    require_prepared();
    let output = Command::new("promtool")
        .args(["check", "rules", RULES])
        .current_dir(repo_root())
        .output()
        .expect("promtool runs (scripts/e2e installs Debian's prometheus package)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &*String::from_utf8_lossy(&output.stderr);
    println!("{text}");
    assert!(output.status.success(), "promtool check rules: {text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Prometheus's answer to an instant query, as one number.
fn query(prometheus: &str, expr: &str) -> Option<f64> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", query_escape(expr)),
    )
    .ok()?;
    if status != 200 {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn prometheus_scrapes_exactly_the_decisions_made() {
    require_prepared();
    let root = repo_root();
    let scratch = tempfile::tempdir().unwrap();
    let vigil = Background::start(
        &format!(
            "cd {scratch} && exec {binary} serve --policies {policies} --listen 127.0.0.1:0 \
             --metrics-listen 127.0.0.1:0 --watch false",
            scratch = scratch.path().display(),
            binary = vigil_e2e::vigil_binary().display(),
            policies = root.join("policies").display(),
        ),
        &[],
        "metrics listening on ",
        Duration::from_secs(60),
    );
    let grpc = vigil.printed("listening on ").unwrap();
    let metrics = vigil.printed("metrics listening on ").unwrap();

    let port = free_port();
    let config = scratch.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [\"{metrics}\"]\n",
            rules = root.join(RULES).display(),
        ),
    )
    .unwrap();
    let prometheus_address = format!("127.0.0.1:{port}");
    let prometheus = Background::start(
        &format!(
            "exec prometheus --config.file={config} --storage.tsdb.path={data} \
             --web.listen-address={prometheus_address} 2>&1 | sed -u 's/^/prometheus: /' >&2 & \
             echo started; wait",
            config = config.display(),
            data = scratch.path().join("tsdb").display(),
        ),
        &[],
        "started",
        Duration::from_secs(10),
    );
    eventually("Prometheus ready", Duration::from_secs(60), || {
        matches!(http_get(&prometheus_address, "/-/ready"), Ok((200, _))).then_some(())
    });

    // Load: 16 concurrent clients, allows and denies.
    let (allowed, denied) = (2_400u64, 800u64);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..16u64 {
            let address = format!("http://{grpc}");
            tasks.push(tokio::spawn(async move {
                let mut client = AccessControlClient::connect(address).await.unwrap();
                for call in 0..(allowed + denied) / 16 {
                    let deny = (worker * 1000 + call) % 4 == 3;
                    let (subject, object) = if deny {
                        ("frank", "finance.payments")
                    } else {
                        ("alice", "crm.customers")
                    };
                    let answer = client
                        .authorize(AuthorizeRequest {
                            subject: subject.into(),
                            object: object.into(),
                            action: "read".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(answer.allowed, !deny);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });

    let total = allowed + denied;
    let counted = eventually(
        "Prometheus scraped every decision",
        Duration::from_secs(60),
        || {
            query(
                &prometheus_address,
                "sum(vigil_decisions_total{rpc=\"Authorize\"})",
            )
            .filter(|counted| *counted == total as f64)
        },
    );
    assert_eq!(counted, total as f64);
    let denies = query(
        &prometheus_address,
        "sum(vigil_decisions_total{rpc=\"Authorize\",result=\"deny\"})",
    );
    assert_eq!(denies, Some(denied as f64));
    let observed = query(
        &prometheus_address,
        "sum(vigil_request_duration_seconds_count{rpc=\"Authorize\"})",
    );
    assert_eq!(observed, Some(total as f64));
    let p99 = query(
        &prometheus_address,
        "histogram_quantile(0.99, sum by (le) (vigil_request_duration_seconds_bucket{rpc=\"Authorize\"}))",
    )
    .expect("a p99 from the histogram");
    assert!(p99 > 0.0 && p99 < 1.0, "p99 {p99}");
    println!("Prometheus counted {counted} Authorize decisions; p99 {p99:.6} s");
    let writable = query(&prometheus_address, "vigil_audit_writable");
    assert_eq!(writable, Some(1.0));

    let (status, rules) = http_get(&prometheus_address, "/api/v1/rules").unwrap();
    assert_eq!(status, 200);
    assert!(rules.contains("VigilAuditNotWritable"), "{rules}");

    prometheus.stop();
    vigil.stop();
}
