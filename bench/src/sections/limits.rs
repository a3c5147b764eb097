//! Section (l): limits.toml. The cost of one local rate check, in
//! process; saturated durable Authorize with a matching local limit (one
//! that never denies) against none, alternating; then budgets shared
//! through a local Redis: Authorize throughput and p99 at 1 and 64
//! streams, beside the floor of one Redis round trip (PING, and the limit
//! script alone).

use vigil::limits::{shared::SharedStore, Call as LimitCall, LimitOptions, Limiter, Limits};

use crate::*;

/// A limit every call of the mix matches and none ever exceeds.
const MATCHING_LIMIT: &str =
    "[[rate]]\nname = \"everyone\"\nrate = \"1000000000/s\"\nper = \"subject+object\"\n";

/// The example policies plus `limits` as limits.toml.
fn policies_with(from: &Path, limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["model.conf", "policy.csv", "classification.toml"] {
        std::fs::copy(from.join(name), dir.path().join(name)).expect("copy policies");
    }
    std::fs::write(dir.path().join("limits.toml"), limits).expect("write limits.toml");
    dir
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

pub(crate) async fn run(run: &mut Run<'_>) {
    let settings = run.settings;
    run.report.section(
        "(l) Limits: rate checks in process and shared through Redis",
        "| measure | figure |",
    );

    // One local check: matching the rules and spending from the bucket.
    let limits = Limits::parse(MATCHING_LIMIT, &|_| false, &|_| false).expect("limits parse");
    let limiter = Limiter::new(LimitOptions::default()).expect("local limiter");
    let subjects: Vec<String> = (0..10_000).map(|i| format!("user{i}")).collect();
    let no_roles = |_: &str| false;
    let checks = if run.quick { 1_000_000 } else { 5_000_000 };
    let started = Instant::now();
    for i in 0..checks {
        let call = LimitCall {
            subject: &subjects[i % subjects.len()],
            roles: &[],
            object: "crm.customers",
            action: "read",
            domain: "",
        };
        let matched = limits.rates_for(&call, &no_roles);
        assert!(limiter.check_here(&matched).is_ok());
    }
    let per_check = started.elapsed().as_nanos() as f64 / checks as f64;
    run.report.row(format!(
        "| one local rate check (match the rules, spend from a GCRA bucket; 10,000 subjects) | {per_check:.0} ns |"
    ));

    // The bound on memory: a flood of distinct subjects against one rule.
    let flood = if run.quick { 1_000_000 } else { 4_000_000 };
    let allowance = vigil::limits::file::allowance("10/h", None).expect("a rate");
    let before = own_rss();
    let bucket =
        vigil::limits::local::LocalBucket::new(&allowance, LimitOptions::default().max_keys);
    for subject in 0..flood as u64 {
        let _ = bucket.take(subject.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let grown = own_rss().saturating_sub(before);
    run.report.row(format!(
        "| {flood} distinct subjects against one rule (max_keys {}) | {} keys held, {} sent to the overflow budget, RSS +{:.1} MB |",
        LimitOptions::default().max_keys,
        bucket.keys(),
        bucket.overflowed(),
        grown as f64 / 1e6
    ));
    drop(bucket);

    // Saturated durable Authorize with and without a matching limit.
    let limited = policies_with(run.policies, MATCHING_LIMIT);
    let mut without: Option<Measured> = None;
    let mut with: Option<Measured> = None;
    for _turn in 0..2 {
        for limit in [false, true] {
            let policies = if limit { limited.path() } else { run.policies };
            let server = Server::start(run.vigil, policies, &[], settings.pinned);
            let m = authorize_load(&server, 1024, settings).await;
            drop(server);
            keep_faster(if limit { &mut with } else { &mut without }, m);
        }
    }
    let (without, with) = (without.expect("measured"), with.expect("measured"));
    let ratio = with.throughput() / without.throughput();
    run.report.row(format!(
        "| saturated durable Authorize, no limit / a matching local limit (best of two turns) | {:.0} / {:.0} req/s = {ratio:.2}× |",
        without.throughput(),
        with.throughput()
    ));
    run.report.target(
        "Authorize saturated with a matching local limit vs without",
        format!("{ratio:.2}×"),
        "≥ 0.95×".into(),
        ratio >= 0.95,
    );

    // Shared through Redis.
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        run.report.note(
            "(l) Redis not measured: redis-server is not installed (scripts/e2e installs it)"
                .into(),
        );
        return;
    }
    let redis = vigil_e2e::Redis::start();
    if settings.pinned {
        // Redis shares the generator's core, not the server's: in
        // production it is on another host.
        redis.pin_to_cpu(1);
    }
    let store = std::sync::Arc::new(
        SharedStore::new(&redis.url(), "vigil:bench:", Duration::from_millis(500))
            .expect("redis url"),
    );
    let prober = tokio::spawn(store.clone().keep_connected());
    while !store.is_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pings = Vec::new();
    for _ in 0..5_000 {
        let started = Instant::now();
        store.ping().await.expect("PING");
        pings.push(started.elapsed());
    }
    let shared_limits =
        Limits::parse(MATCHING_LIMIT, &|_| false, &|_| false).expect("limits parse");
    let shared_limiter = Limiter::new(LimitOptions {
        backend: Some(redis.url()),
        timeout: Duration::from_millis(500),
        ..LimitOptions::default()
    })
    .expect("shared limiter");
    let connection = tokio::spawn(
        shared_limiter
            .shared()
            .expect("a shared store")
            .clone()
            .keep_connected(),
    );
    while !shared_limiter.shared().expect("a shared store").is_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut scripts = Vec::new();
    for i in 0..5_000 {
        let call = LimitCall {
            subject: &subjects[i % subjects.len()],
            roles: &[],
            object: "crm.customers",
            action: "read",
            domain: "",
        };
        let matched = shared_limits.rates_for(&call, &no_roles);
        let started = Instant::now();
        let via = shared_limiter
            .check_rates(&matched)
            .await
            .expect("within the limit");
        assert_eq!(via, vigil::limits::Via::Shared);
        scripts.push(started.elapsed());
    }
    prober.abort();
    connection.abort();
    let (ping50, ping99) = percentiles(pings);
    let (script50, script99) = percentiles(scripts);
    run.report.row(format!(
        "| floor: one Redis round trip, PING / the limit script (EVALSHA), one at a time | p50 {} / {} µs, p99 {} / {} µs |",
        micros(ping50),
        micros(script50),
        micros(ping99),
        micros(script99)
    ));

    let url = redis.url();
    let server = Server::start(
        run.vigil,
        limited.path(),
        &["--limits-backend", &url],
        settings.pinned,
    );
    // The server connects to Redis in the background: let it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for streams in [1, 64] {
        let local_server = Server::start(run.vigil, limited.path(), &[], settings.pinned);
        let local = authorize_load(&local_server, streams, settings).await;
        drop(local_server);
        let shared = authorize_load(&server, streams, settings).await;
        run.report.row(format!(
            "| durable Authorize with the limit in Redis / local, {streams} stream(s) | {:.0} / {:.0} req/s; p99 {} / {} µs |",
            shared.throughput(),
            local.throughput(),
            micros(shared.percentile(0.99)),
            micros(local.percentile(0.99)),
        ));
    }
    drop(server);
}

/// This process's resident set (bytes), from /proc.
fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
