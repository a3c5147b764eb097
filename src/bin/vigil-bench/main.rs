//! vigil's benchmark: builds and starts the real `vigil` binary on the
//! shipped example policies, drives it with a tonic load generator (and,
//! for saturation, the lean generator of lean.rs), and measures the
//! in-process costs that do not need the network. Prints a table and
//! writes bench/RESULTS.md.
//!
//! ```sh
//! cargo run --release --bin vigil-bench            # full run (~4 minutes)
//! cargo run --release --bin vigil-bench -- --quick # shorter runs
//! cargo run --release --bin vigil-bench -- --only a,f # some sections
//! ```
//!
//! bench/RESULTS.md is written only by a run of every section.
//!
//! On Linux with two or more cores the server is pinned to core 0 and the
//! generator to core 1 (taskset), and the output says so. Every gRPC figure
//! is also printed as a ratio to "the floor": a no-op unary RPC
//! (grpc.health.v1.Health/Check on the same server) measured by the same
//! generator in the same run.

mod lean;

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use vigil::{
    audit::{verify::verify_dir, AuditLog, AuditOptions, Record},
    authz::{AccessRequest, Engine, Origin, RuleLine},
    cli::SyncMode,
    proto::{
        access_control_client::AccessControlClient,
        data_masking_client::DataMaskingClient,
        json::{value::Kind, Struct, Value},
        policy_admin_client::PolicyAdminClient,
        AuthorizeBatchRequest, AuthorizeRequest, MaskRequest, ReloadPoliciesRequest,
    },
};

struct Settings {
    warmup: Duration,
    duration: Duration,
    pinned: bool,
}

/// The sections a run measures (`--only a,b,…`; all by default).
struct Only(Option<Vec<char>>);

impl Only {
    fn from_args() -> Only {
        let args: Vec<String> = std::env::args().collect();
        let list = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|list| {
                list.split(',')
                    .filter_map(|s| s.trim().chars().next())
                    .collect()
            });
        Only(list)
    }

    fn wants(&self, section: char) -> bool {
        self.0.as_ref().is_none_or(|list| list.contains(&section))
    }

    fn everything(&self) -> bool {
        self.0.is_none()
    }
}

/// The allocator vigil's binary uses, so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, samples] = args.as_slice() {
        if flag == FSYNC_PROBE_ARG {
            let (p50, p99) = fdatasync_probe(samples.parse().expect("sample count"));
            println!("{} {}", p50.as_nanos(), p99.as_nanos());
            return;
        }
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let only = Only::from_args();
    let pinned = pin_self();
    let settings = Settings {
        warmup: Duration::from_millis(if quick { 300 } else { 700 }),
        duration: Duration::from_millis(if quick { 1200 } else { 3000 }),
        pinned,
    };
    let vigil = build_vigil();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::default();
    runtime.block_on(run(&vigil, &settings, &mut report, quick, &only));
    print!("{}", report.targets_table());
    if only.everything() {
        report.finish(&settings);
    }
}

/// The core the server runs on when pinned; the generator has core 1.
const SERVER_CORE: usize = 0;

/// Re-executes the generator on core 1 (once); the server goes on core 0.
fn pin_self() -> bool {
    // Checked first: once pinned, this process sees one core.
    if std::env::var_os("VIGIL_BENCH_PINNED").is_some() {
        return true;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let taskset = Command::new("taskset").arg("--version").output().is_ok();
    if cores < 2 || !taskset || !cfg!(target_os = "linux") {
        return false;
    }
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("VIGIL_BENCH_PINNED", "1")
        .status()
        .expect("re-exec under taskset");
    std::process::exit(status.code().unwrap_or(1));
}

fn build_vigil() -> PathBuf {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "vigil"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building vigil failed");
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("target dir").join("vigil")
}

// ---- the server under test -----------------------------------------------

struct Server {
    child: Child,
    tcp: String,
    unix: PathBuf,
    _dir: tempfile::TempDir,
    started_in: Duration,
}

impl Server {
    fn start(vigil: &Path, policies: &Path, extra: &[&str], pinned: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("vigil.sock");
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(SERVER_CORE.to_string()).arg(vigil);
            c
        } else {
            Command::new(vigil)
        };
        command
            .arg("serve")
            .arg("--policies")
            .arg(policies)
            .arg("--audit-dir")
            .arg(dir.path().join("audit"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--watch")
            .arg("false")
            .args(extra)
            .current_dir(dir.path())
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = command.spawn().expect("start vigil");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut tcp = String::new();
        let mut seen = 0;
        while seen < 2 {
            let line = lines
                .next()
                .expect("vigil exited before listening")
                .expect("read stdout");
            if let Some(address) = line.strip_prefix("listening on ") {
                seen += 1;
                if !address.starts_with("unix:") {
                    tcp = address.to_owned();
                }
            }
        }
        let started_in = started.elapsed();
        Server {
            child,
            tcp,
            unix: socket,
            _dir: dir,
            started_in,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn channel(&self, unix: bool) -> Channel {
        if unix {
            let path = self.unix.clone();
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .expect("connect unix")
        } else {
            Endpoint::from_shared(format!("http://{}", self.tcp))
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect tcp")
        }
    }

    fn cpu(&self) -> Duration {
        process_cpu(self.pid())
    }

    fn memory(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The generator's idle connections would hold a graceful shutdown
        // for its full grace period; the benchmark does not need one.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process, from /proc (10 ms ticks).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

// ---- load generation -----------------------------------------------------

#[derive(Clone)]
enum Call {
    Floor,
    Authorize(Vec<AuthorizeRequest>),
    Batch(AuthorizeBatchRequest),
    Mask(MaskRequest),
}

impl Call {
    /// The method's path, its requests as gRPC frames, and items per call,
    /// for the lean generator.
    fn framed(&self) -> (&'static str, Vec<bytes::Bytes>, u64) {
        match self {
            Call::Floor => (
                "/grpc.health.v1.Health/Check",
                vec![lean::frame(&HealthCheckRequest::default())],
                1,
            ),
            Call::Authorize(requests) => (
                "/vigil.v1.AccessControl/Authorize",
                requests.iter().map(lean::frame).collect(),
                1,
            ),
            Call::Batch(batch) => (
                "/vigil.v1.AccessControl/AuthorizeBatch",
                vec![lean::frame(batch)],
                batch.requests.len() as u64,
            ),
            Call::Mask(request) => (
                "/vigil.v1.DataMasking/Mask",
                vec![lean::frame(request)],
                request.records.len() as u64,
            ),
        }
    }
}

/// Which client drives the load.
#[derive(Clone, Copy, PartialEq)]
enum Generator {
    /// tonic's generated clients: what a Rust service calling vigil runs.
    Tonic,
    /// Pre-encoded frames over bare HTTP/2 (lean.rs): cheap enough per
    /// call that the server, not the generator, saturates.
    Lean,
}

struct Measured {
    calls: u64,
    items: u64,
    elapsed: Duration,
    latencies: Vec<u32>,
    cpu: Duration,
    /// The generator's own CPU time: near its elapsed time, the generator
    /// and not the server set the pace.
    generator_cpu: Duration,
    errors: u64,
}

impl Measured {
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_nanos(u64::from(sorted[i]) * 100)
    }
    /// Share of one core each side used over the measured period.
    fn busy(&self) -> (f64, f64) {
        let elapsed = self.elapsed.as_secs_f64().max(f64::EPSILON);
        (
            100.0 * self.cpu.as_secs_f64() / elapsed,
            100.0 * self.generator_cpu.as_secs_f64() / elapsed,
        )
    }
    fn cpu_per_call(&self) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        self.cpu / self.calls as u32
    }
}

async fn drive(
    server: &Server,
    unix: bool,
    streams: usize,
    call: Call,
    generator: Generator,
    settings: &Settings,
) -> Measured {
    // Up to 64 streams per connection past 256 streams.
    let connections = (streams / 64).clamp(streams.min(4), 16);
    let mut channels = Vec::new();
    let mut lean_connections = Vec::new();
    for _ in 0..connections {
        match generator {
            Generator::Tonic => channels.push(server.channel(unix).await),
            Generator::Lean => lean_connections.push(if unix {
                lean::Connection::unix(&server.unix).await
            } else {
                lean::Connection::tcp(&server.tcp).await
            }),
        }
    }
    let (path, frames, items_per_call) = call.framed();
    let frames = Arc::new(frames);
    let run = |duration: Duration, record: bool| {
        let mut tasks = Vec::new();
        for stream in 0..streams {
            let call = call.clone();
            let tonic_channel = channels.get(stream % connections).cloned();
            let mut lean_connection = lean_connections.get(stream % connections).cloned();
            let frames = frames.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(if record { 200_000 } else { 0 });
                let (mut calls, mut items, mut errors) = (0u64, 0u64, 0u64);
                let mut tonic_clients = tonic_channel.map(|channel| {
                    (
                        AccessControlClient::new(channel.clone()),
                        HealthClient::new(channel.clone()),
                        DataMaskingClient::new(channel),
                    )
                });
                let deadline = Instant::now() + duration;
                let mut n = stream;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    n = n.wrapping_add(7);
                    let ok = match (&mut lean_connection, &mut tonic_clients) {
                        (Some(connection), _) => connection
                            .unary(path, frames[n % frames.len()].clone())
                            .await
                            .is_ok(),
                        (None, Some((access, health, masking))) => match &call {
                            Call::Floor => health
                                .check(HealthCheckRequest {
                                    service: String::new(),
                                })
                                .await
                                .is_ok(),
                            Call::Authorize(requests) => access
                                .authorize(requests[n % requests.len()].clone())
                                .await
                                .is_ok(),
                            Call::Batch(batch) => {
                                access.authorize_batch(batch.clone()).await.is_ok()
                            }
                            Call::Mask(request) => masking.mask(request.clone()).await.is_ok(),
                        },
                        (None, None) => unreachable!("every stream has a connection"),
                    };
                    if ok {
                        calls += 1;
                        items += items_per_call;
                        if record {
                            latencies.push(
                                (started.elapsed().as_nanos() / 100).min(u128::from(u32::MAX))
                                    as u32,
                            );
                        }
                    } else {
                        errors += 1;
                    }
                }
                (calls, items, errors, latencies)
            }));
        }
        tasks
    };
    for task in run(settings.warmup, false) {
        let _ = task.await;
    }
    let cpu_before = server.cpu();
    let generator_before = process_cpu(std::process::id());
    let started = Instant::now();
    let mut measured = Measured {
        calls: 0,
        items: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        cpu: Duration::ZERO,
        generator_cpu: Duration::ZERO,
        errors: 0,
    };
    for task in run(settings.duration, true) {
        let (calls, items, errors, latencies) = task.await.expect("load task");
        measured.calls += calls;
        measured.items += items;
        measured.errors += errors;
        measured.latencies.extend(latencies);
    }
    measured.elapsed = started.elapsed();
    measured.cpu = server.cpu().saturating_sub(cpu_before);
    measured.generator_cpu = process_cpu(std::process::id()).saturating_sub(generator_before);
    measured
}

/// The disk's own cost of a durable append (p50, p99): the bound on any
/// durable single-stream latency. Measured in a temporary directory, on
/// the file system the server's audit log is on, and (when pinned) from
/// the server's core: on this VM the disk's interrupt lands on one core,
/// and an fdatasync issued from the other costs 100–150 µs more.
fn fdatasync_cost(samples: usize, settings: &Settings) -> (Duration, Duration) {
    if settings.pinned {
        fdatasync_cost_on(SERVER_CORE, samples)
    } else {
        fdatasync_probe(samples)
    }
}

/// `fdatasync_probe` in a child process pinned to `core`.
fn fdatasync_cost_on(core: usize, samples: usize) -> (Duration, Duration) {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg(exe)
        .arg(FSYNC_PROBE_ARG)
        .arg(samples.to_string())
        .env("VIGIL_BENCH_PINNED", "1")
        .output()
        .expect("fdatasync probe");
    assert!(output.status.success(), "the fdatasync probe failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut nanos = text
        .split_whitespace()
        .map(|n| Duration::from_nanos(n.parse().expect("probe output")));
    let p50 = nanos.next().expect("probe p50");
    let p99 = nanos.next().expect("probe p99");
    (p50, p99)
}

/// Makes the bench binary run only the probe and print "p50 p99" in
/// nanoseconds: how `fdatasync_cost_on` measures from another core.
const FSYNC_PROBE_ARG: &str = "--fdatasync-probe";

/// Appends a line and times its fdatasync, `samples` times, from this
/// thread's core.
fn fdatasync_probe(samples: usize) -> (Duration, Duration) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("probe"))
        .expect("probe file");
    let line = vec![b'x'; 350];
    let mut syncs = Vec::with_capacity(samples);
    for _ in 0..samples {
        file.write_all(&line).expect("append");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        syncs.push(started.elapsed());
    }
    syncs.sort_unstable();
    (syncs[samples / 2], syncs[samples * 99 / 100])
}

// ---- workloads -----------------------------------------------------------

fn authorize_mix() -> Vec<AuthorizeRequest> {
    let cases = [
        ("alice", "crm.customers", "read"),
        ("bob", "crm.tickets", "write"),
        ("carol", "hr.employees", "read"),
        ("frank", "finance.payments", "read"),
        ("erin", "reports.q3", "read"),
        ("dave", "hr.employees", "delete"),
        ("mallory", "crm.customers", "read"),
        ("bob", "crm.customers", "export"),
    ];
    cases
        .iter()
        .map(|(s, o, a)| AuthorizeRequest {
            subject: (*s).into(),
            object: (*o).into(),
            action: (*a).into(),
            ..Default::default()
        })
        .collect()
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The Mask scenarios' requests: one customer record, and ten.
fn mask_requests() -> (MaskRequest, MaskRequest) {
    let ten = MaskRequest {
        subject: "bob".into(),
        object: "crm.customers".into(),
        records: (0..10).map(customer_record).collect(),
        ..Default::default()
    };
    let single = MaskRequest {
        records: vec![customer_record(1)],
        ..ten.clone()
    };
    (single, ten)
}

/// A 20-field customer record with 5 sensitive fields (mobile, resident id,
/// email, bank card, an address with a phone number in free text).
fn customer_record(i: usize) -> Struct {
    let mut fields = vec![
        ("customer_id".into(), string(&format!("C{i:08}"))),
        ("mobile".into(), string("13812345678")),
        ("id_number".into(), string("11010519491231002X")),
        ("email".into(), string("zhang.san@example.com")),
        ("card_number".into(), string("4111 1111 1111 1111")),
        (
            "address".into(),
            string("北京市朝阳区建国路88号 联系人电话 13987654321"),
        ),
    ];
    for (k, v) in [
        ("segment", "retail"),
        ("status", "active"),
        ("city", "Beijing"),
        ("country", "CN"),
        ("tier", "gold"),
        ("channel", "app"),
        ("language", "zh-CN"),
        ("currency", "CNY"),
        ("created_at", "2024-03-07T10:00:00Z"),
        ("updated_at", "2026-11-01T08:30:00Z"),
        ("source", "crm-sync"),
        ("owner_team", "north"),
        ("marketing_opt_in", "yes"),
        ("notes", "prefers evening calls"),
    ] {
        fields.push((k.into(), string(v)));
    }
    Struct { fields }
}

// ---- reporting -----------------------------------------------------------

#[derive(Default)]
struct Report {
    rows: Vec<String>,
    notes: Vec<String>,
    /// The issue's targets: what, the figure measured, the goal, met.
    targets: Vec<(String, String, String, bool)>,
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

impl Report {
    fn section(&mut self, title: &str, header: &str) {
        println!("\n## {title}\n\n{header}");
        let separators = header.matches('|').count().saturating_sub(1);
        let rule = format!("|{}", "---|".repeat(separators));
        println!("{rule}");
        self.rows.push(format!("\n## {title}\n\n{header}\n{rule}"));
    }

    fn row(&mut self, row: String) {
        println!("{row}");
        self.rows.push(row);
    }

    fn note(&mut self, note: String) {
        println!("{note}");
        self.notes.push(note);
    }

    fn target(&mut self, what: &str, measured: String, goal: String, met: bool) {
        self.targets.push((what.to_owned(), measured, goal, met));
    }

    /// The target table, printed last and written with the results.
    fn targets_table(&self) -> String {
        let mut out = String::from(
            "\n## Targets on this machine\n\n| target | measured | goal | met |\n|---|---|---|---|\n",
        );
        for (what, measured, goal, met) in &self.targets {
            let _ = writeln!(
                out,
                "| {what} | {measured} | {goal} | {} |",
                if *met { "met" } else { "**missed**" }
            );
        }
        out
    }

    fn finish(&self, settings: &Settings) {
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        // The machine's cores, not this (pinned) process's.
        let cores = std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(1);
        let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let mut out = String::new();
        let _ = writeln!(out, "# vigil benchmark results\n");
        let _ = writeln!(out, "- machine: {cpu}, {cores} cores");
        let _ = writeln!(out, "- commit: {commit}");
        let _ = writeln!(out, "- date: {date}");
        let _ = writeln!(
            out,
            "- pinning: {}",
            if settings.pinned {
                "server on core 0, load generator on core 1 (taskset)"
            } else {
                "none (fewer than 2 cores or no taskset)"
            }
        );
        let _ = writeln!(
            out,
            "- runs: {:?} warm-up, {:?} measured per scenario",
            settings.warmup, settings.duration
        );
        let _ = writeln!(out, "- command: `cargo run --release --bin vigil-bench`");
        for row in &self.rows {
            let _ = writeln!(out, "{row}");
        }
        out.push_str(&self.targets_table());
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/RESULTS.md");
        std::fs::write(&path, out).expect("write bench/RESULTS.md");
        println!("\nwritten to {}", path.display());
    }
}

// ---- synthetic policies for the scale scenarios ---------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Rbac,
    RbacDomains,
    KeyMatch,
}

fn synthetic(shape: Shape, lines: usize) -> (String, Vec<RuleLine>) {
    let origin = |line| Origin {
        file: "policy.csv".into(),
        line,
    };
    let roles = (lines / 50).max(4);
    let users = (lines / 10).max(4);
    let grants = users;
    let mut rules = Vec::with_capacity(lines);
    let model = match shape {
        Shape::Rbac => "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n",
        Shape::RbacDomains => "[request_definition]\nr = sub, dom, obj, act\n[policy_definition]\np = sub, dom, obj, act\n[role_definition]\ng = _, _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act\n",
        Shape::KeyMatch => "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow)) && !some(where (p.eft == deny))\n[matchers]\nm = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && (r.act == p.act || p.act == \"*\")\n",
    };
    for u in 0..grants.min(lines / 2) {
        let mut values = vec![format!("user{u}"), format!("role{}", u % roles)];
        if shape == Shape::RbacDomains {
            values.push(format!("tenant{}", (u % roles) % 10));
        }
        rules.push(RuleLine {
            ptype: "g".into(),
            values,
            origin: origin(rules.len() + 1),
        });
    }
    let mut k = 0;
    while rules.len() < lines {
        let role = format!("role{}", k % roles);
        let values = match shape {
            Shape::Rbac => vec![role, format!("dataset{k}"), "read".into()],
            Shape::RbacDomains => vec![
                role,
                format!("tenant{}", (k % roles) % 10),
                format!("dataset{k}"),
                "read".into(),
            ],
            Shape::KeyMatch => vec![role, format!("svc{k}.*"), "read".into(), "allow".into()],
        };
        rules.push(RuleLine {
            ptype: "p".into(),
            values,
            origin: origin(rules.len() + 1),
        });
        k += 1;
    }
    (model.to_owned(), rules)
}

fn write_policy_dir(shape: Shape, lines: usize) -> tempfile::TempDir {
    let (model, rules) = synthetic(shape, lines);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("model.conf"), model).expect("write model");
    let mut csv = String::with_capacity(lines * 32);
    for rule in &rules {
        csv.push_str(&rule.ptype);
        for v in &rule.values {
            csv.push_str(", ");
            csv.push_str(v);
        }
        csv.push('\n');
    }
    std::fs::write(dir.path().join("policy.csv"), csv).expect("write policy");
    dir
}

/// A `read` of one of [`scale_requests`]' (subject, object, domain).
fn scale_access<'a>(
    (subject, object, domain): &'a (String, String, String),
    attributes: &'a HashMap<String, String>,
) -> AccessRequest<'a> {
    AccessRequest {
        subject,
        extra_roles: &[],
        object,
        action: "read",
        domain,
        attributes,
    }
}

/// Requests with distinct subjects and objects, allowed or denied.
fn scale_requests(
    shape: Shape,
    lines: usize,
    allowed: bool,
    count: usize,
) -> Vec<(String, String, String)> {
    let roles = (lines / 50).max(4);
    let users = (lines / 10).max(4).min(lines / 2);
    let datasets = lines - users;
    (0..count)
        .map(|i| {
            let user = (i * 7919) % users;
            let role = user % roles;
            // A dataset granted to the user's role (k % roles == role), or not.
            let mut k = (i * 104_729) % datasets.max(1);
            k = k - (k % roles) + role;
            if !allowed {
                k = k - (k % roles) + (role + 1) % roles;
            }
            let object = match shape {
                Shape::KeyMatch => format!("svc{k}.orders"),
                _ => format!("dataset{k}"),
            };
            let domain = if shape == Shape::RbacDomains {
                format!("tenant{}", role % 10)
            } else {
                String::new()
            };
            (format!("user{user}"), object, domain)
        })
        .collect()
}

// ---- the run -------------------------------------------------------------

async fn run(vigil: &Path, settings: &Settings, report: &mut Report, quick: bool, only: &Only) {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut peak_rss = 0;
    let mut saturated_batch_authorize = 0.0;

    if only.wants('a') {
        report.section(
        "(a, g) Authorize over gRPC vs the floor (no-op RPC, same server, same generator)",
        "| transport | audit sync | streams | req/s | ×floor | p50 µs | p99 µs | p999 µs | server CPU µs/call | server / generator busy % | errors | floor req/s | floor p50 µs | floor CPU µs/call | floor server / generator busy % | target |",
    );
        for sync in ["batch", "always", "off"] {
            let server = Server::start(vigil, &policies, &["--audit-sync", sync], settings.pinned);
            for unix in [false, true] {
                for streams in [1, 16, 64] {
                    // Measured right before its scenario, on the same
                    // server: the machine drifts over a run.
                    let floor = drive(
                        &server,
                        unix,
                        streams,
                        Call::Floor,
                        Generator::Tonic,
                        settings,
                    )
                    .await;
                    let m = drive(
                        &server,
                        unix,
                        streams,
                        Call::Authorize(authorize_mix()),
                        Generator::Tonic,
                        settings,
                    )
                    .await;
                    let transport = if unix { "unix" } else { "tcp" };
                    let ratio = m.throughput() / floor.throughput();
                    let p50 = m.percentile(0.5);
                    let floor_p50 = floor.percentile(0.5);
                    let target = match (sync, streams) {
                        ("batch", 64) => "closed loop; saturated in (s)".to_owned(),
                        ("batch", 1) => {
                            // The disk's cost, measured now: it drifts.
                            let (fsync, _) = fdatasync_cost(200, settings);
                            let allowed = floor_p50 + fsync + Duration::from_micros(30);
                            report.target(
                                &format!("Authorize 1 stream, durable, {transport}: p50"),
                                format!("{} µs", micros(p50)),
                                format!(
                                    "≤ floor {} + fdatasync {} + 30 = {} µs",
                                    micros(floor_p50),
                                    micros(fsync),
                                    micros(allowed)
                                ),
                                p50 <= allowed,
                            );
                            format!("p50 ≤ {} µs", micros(allowed))
                        }
                        ("off", 1) => {
                            let allowed = floor_p50.mul_f64(1.3);
                            report.target(
                                &format!("Authorize 1 stream, sync off, {transport}: p50"),
                                format!("{} µs", micros(p50)),
                                format!("≤ 1.3× floor = {} µs", micros(allowed)),
                                p50 <= allowed,
                            );
                            format!("p50 ≤ {} µs", micros(allowed))
                        }
                        _ => String::new(),
                    };
                    let (busy, generator_busy) = m.busy();
                    let (floor_busy, floor_generator_busy) = floor.busy();
                    report.row(format!(
                        "| {transport} | {sync} | {streams} | {:.0} | {ratio:.2} | {} | {} | {} | {} | {busy:.0} / {generator_busy:.0} | {} | {:.0} | {} | {} | {floor_busy:.0} / {floor_generator_busy:.0} | {target} |",
                        m.throughput(),
                        micros(p50),
                        micros(m.percentile(0.99)),
                        micros(m.percentile(0.999)),
                        micros(m.cpu_per_call()),
                        m.errors,
                        floor.throughput(),
                        micros(floor_p50),
                        micros(floor.cpu_per_call()),
                    ));
                }
            }
            peak_rss = peak_rss.max(server.memory("VmHWM"));
        }
    }

    if only.wants('s') {
        report.section(
            "(s) Saturated: lean generator (pre-encoded frames over bare HTTP/2), 1,024 streams on 16 connections",
            "| transport | audit sync | call | req/s | items/s | ×reference | p50 µs | p99 µs | server CPU µs/item | server / generator busy % | errors | reference | reference req/s | reference CPU µs/call | reference server / generator busy % | server peak RSS so far MB |",
        );
        let (mask_single, mask_ten) = mask_requests();
        for sync in ["batch", "off"] {
            let server = Server::start(vigil, &policies, &["--audit-sync", sync], settings.pinned);
            let mut scenarios = vec![(
                "tcp",
                Call::Authorize(authorize_mix()),
                "Authorize",
                Call::Floor,
                "floor",
            )];
            if sync == "batch" {
                scenarios.push((
                    "unix",
                    Call::Authorize(authorize_mix()),
                    "Authorize",
                    Call::Floor,
                    "floor",
                ));
                for (name, request) in [
                    ("Mask, 1 record", &mask_single),
                    ("Mask, 10 records", &mask_ten),
                ] {
                    scenarios.push((
                        "tcp",
                        Call::Mask(request.clone()),
                        name,
                        Call::Authorize(authorize_mix()),
                        "Authorize",
                    ));
                }
            }
            for (transport, call, name, reference_call, reference_name) in scenarios {
                let unix = transport == "unix";
                // Measured right before, on the same server: the machine
                // drifts over a run.
                let reference = drive(
                    &server,
                    unix,
                    1024,
                    reference_call,
                    Generator::Lean,
                    settings,
                )
                .await;
                let m = drive(&server, unix, 1024, call, Generator::Lean, settings).await;
                let items = m.items as f64 / m.elapsed.as_secs_f64();
                let ratio = items / reference.throughput();
                let (busy, generator_busy) = m.busy();
                let (reference_busy, reference_generator_busy) = reference.busy();
                report.row(format!(
                    "| {transport} | {sync} | {name} | {:.0} | {items:.0} | {ratio:.2} | {} | {} | {:.2} | {busy:.0} / {generator_busy:.0} | {} | {reference_name} | {:.0} | {} | {reference_busy:.0} / {reference_generator_busy:.0} | {:.1} |",
                    m.throughput(),
                    micros(m.percentile(0.5)),
                    micros(m.percentile(0.99)),
                    m.cpu.as_secs_f64() * 1e6 / m.items.max(1) as f64,
                    m.errors + reference.errors,
                    reference.throughput(),
                    micros(reference.cpu_per_call()),
                    server.memory("VmHWM") as f64 / 1e6,
                ));
                match (sync, name) {
                    ("batch", "Authorize") => {
                        if !unix {
                            saturated_batch_authorize = m.throughput();
                        }
                        report.target(
                            &format!("Authorize saturated, durable batch audit, {transport}"),
                            format!(
                                "{:.0} req/s = {ratio:.2}× floor ({:.0})",
                                m.throughput(),
                                reference.throughput()
                            ),
                            "≥ 0.6× floor".into(),
                            ratio >= 0.6,
                        );
                    }
                    ("batch", mask) => report.target(
                        &format!("{mask} of 20 fields per call: records/s vs Authorize saturated"),
                        format!(
                            "{items:.0} records/s = {ratio:.2}× ({:.0})",
                            reference.throughput()
                        ),
                        "≥ 0.5×".into(),
                        ratio >= 0.5,
                    ),
                    _ => {}
                }
            }
            // Not the RSS target's load: 1,024 calls in flight (10,240
            // records with ten-record Masks) hold their decoded requests
            // and encoded answers at once. The column above shows it.
        }
    }

    if only.wants('b') {
        let server = Server::start(vigil, &policies, &[], settings.pinned);
        report.section("(b, c) AuthorizeBatch and Mask (TCP, audit sync batch, tonic generator)", "| scenario | streams | calls/s | items/s | p50 µs | p99 µs | server CPU µs/item | Authorize 64 streams req/s, just before | items/s ÷ Authorize |");
        let batch = AuthorizeBatchRequest {
            requests: authorize_mix().into_iter().cycle().take(100).collect(),
        };
        let (mask_single, mask_ten) = mask_requests();
        for (name, call, streams) in [
            ("AuthorizeBatch ×100", Call::Batch(batch), 16),
            ("Mask, 1 record of 20 fields", Call::Mask(mask_single), 64),
            ("Mask, 10 records of 20 fields", Call::Mask(mask_ten), 16),
        ] {
            // The reference is measured right before, on the same server:
            // compared with section (a)'s figure from minutes earlier, the
            // ratio would mostly measure this machine's drift.
            let authorize = drive(
                &server,
                false,
                64,
                Call::Authorize(authorize_mix()),
                Generator::Tonic,
                settings,
            )
            .await
            .throughput();
            let m = drive(&server, false, streams, call, Generator::Tonic, settings).await;
            let items = m.items as f64 / m.elapsed.as_secs_f64();
            let ratio = items / authorize;
            report.row(format!(
                "| {name} | {streams} | {:.0} | {:.0} | {} | {} | {:.2} | {authorize:.0} | {ratio:.2} |",
                m.throughput(),
                items,
                micros(m.percentile(0.5)),
                micros(m.percentile(0.99)),
                m.cpu.as_secs_f64() * 1e6 / m.items.max(1) as f64,
            ));
        }
        peak_rss = peak_rss.max(server.memory("VmHWM"));
        drop(server);
        report.note(format!(
            "peak RSS of the server under load on the example policies (sections a–c, up to 64 streams): {:.1} MB; at 1,024 streams see section (s)",
            peak_rss as f64 / 1e6
        ));
        report.target(
            "peak RSS under load, example policies (up to 64 streams)",
            format!("{:.1} MB", peak_rss as f64 / 1e6),
            "≤ 30 MB".into(),
            peak_rss <= 30_000_000,
        );
    }

    if only.wants('h') {
        report.section(
            "(h) Where time goes in one Authorize call, in process (example policies)",
            "| stage | ns/call |",
        );
        {
            use prost::Message;
            let policy = vigil::policy::PolicySet::load(&policies)
                .await
                .expect("example policies");
            let request = AuthorizeRequest {
                subject: "alice".into(),
                object: "crm.customers".into(),
                action: "read".into(),
                ..Default::default()
            };
            let bytes = request.encode_to_vec();
            let n = if quick { 20_000 } else { 100_000 };
            let time = |f: &mut dyn FnMut()| {
                let started = Instant::now();
                for _ in 0..n {
                    f();
                }
                started.elapsed().as_nanos() as f64 / n as f64
            };
            let decode = time(&mut || {
                std::hint::black_box(AuthorizeRequest::decode(bytes.as_slice()).expect("decodes"));
            });
            let attributes = HashMap::new();
            let access = AccessRequest {
                subject: "alice",
                extra_roles: &[],
                object: "crm.customers",
                action: "read",
                domain: "",
                attributes: &attributes,
            };
            let decide = time(&mut || {
                std::hint::black_box(policy.engine.decide(&access).expect("valid").allowed());
            });
            let reason = time(&mut || {
                let verdict = policy.engine.decide(&access).expect("valid");
                std::hint::black_box(verdict.reason(&access));
            }) - decide;
            let mut buf = Vec::with_capacity(512);
            let record_cost = time(&mut || {
                let mut record = Record::new("decision");
                record.id = Some("Xq0-a1B2c3D4e5F6g7H8iA".into());
                record.sub = Some("alice".into());
                record.obj = Some("crm.customers".into());
                record.act = Some("read".into());
                record.allowed = Some(true);
                record.reason = Some(
                    "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst"
                        .into(),
                );
                record.pv = Some(policy.version.clone());
                record.prev = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
                buf.clear();
                std::hint::black_box(vigil::audit::record::encode(&record, &mut buf));
            });
            let response = vigil::proto::AuthorizeResponse {
                allowed: true,
                decision_id: "Xq0-a1B2c3D4e5F6g7H8iA".into(),
                reason:
                    "allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst"
                        .into(),
                policy_version: policy.version.clone(),
                audit_seq: 42,
                audit_hash: "00".repeat(32),
            };
            let encode = time(&mut || {
                std::hint::black_box(response.encode_to_vec());
            });
            let keys = vigil::keys::Keyring::generate();
            let support = AccessRequest {
                subject: "bob",
                object: "crm.customers",
                ..access
            };
            let record = customer_record(1);
            let mask_one = time(&mut || {
                let visibility = |label: &vigil::mask::Label| policy.grant(&support, label);
                let mut masker = vigil::mask::Masker::new(
                    &policy.classification,
                    "crm.customers",
                    &keys,
                    visibility,
                    32,
                );
                let mut copy = record.clone();
                let mut actions = Vec::new();
                masker.mask(0, &mut copy, &mut actions).expect("masks");
                std::hint::black_box(copy);
            });
            let grants = time(&mut || {
                for label in policy.classification.labels.values() {
                    std::hint::black_box(policy.grant(&support, label));
                }
            });
            report.row(format!("| decode request (prost) | {decode:.0} |"));
            report.row(format!(
                "| decision (compiled engine: {}) | {decide:.0} |",
                policy.engine.is_compiled()
            ));
            report.row(format!("| reason text (rule, role path) | {reason:.0} |"));
            report.row(format!(
                "| audit record: build, JSON, SHA-256 | {record_cost:.0} |"
            ));
            report.row(format!("| encode response (prost) | {encode:.0} |"));
            report.row(format!(
                "| Mask: one 20-field record, support role (whole masker) | {mask_one:.0} |"
            ));
            report.row(format!(
                "| Mask: resolving grants for all {} labels | {grants:.0} |",
                policy.classification.labels.len()
            ));
        }
    }

    if only.wants('d') {
        report.section(
        "(d) In-process decision cost, uncached (distinct subjects and objects)",
        "| model | policy lines | compiled | allowed p50 µs | allowed p99 µs | denied p50 µs | denied p99 µs | casbin-rs p50 µs |",
    );
        let attributes = HashMap::new();
        for shape in [Shape::Rbac, Shape::RbacDomains, Shape::KeyMatch] {
            for lines in [100, 10_000, 100_000] {
                let (model, rules) = synthetic(shape, lines);
                let engine = Engine::build(&model, &rules)
                    .await
                    .expect("synthetic policy builds");
                let mut figures = Vec::new();
                for allowed in [true, false] {
                    let requests =
                        scale_requests(shape, lines, allowed, if quick { 5_000 } else { 20_000 });
                    let mut latencies = Vec::with_capacity(requests.len());
                    for scaled in &requests {
                        let request = scale_access(scaled, &attributes);
                        let started = Instant::now();
                        let verdict = engine.decide(&request).expect("valid request");
                        latencies.push(started.elapsed());
                        assert_eq!(
                            verdict.allowed(),
                            allowed,
                            "{shape:?} {lines}: {} {}: {}",
                            request.subject,
                            request.object,
                            verdict.reason(&request)
                        );
                    }
                    latencies.sort_unstable();
                    figures.push(latencies[latencies.len() / 2]);
                    figures.push(latencies[latencies.len() * 99 / 100]);
                }
                // casbin-rs alone, for comparison: few calls, it is linear.
                let samples = if lines >= 100_000 {
                    3
                } else if lines >= 10_000 {
                    20
                } else {
                    500
                };
                let requests = scale_requests(shape, lines, true, samples);
                let mut reference = Vec::new();
                for scaled in &requests {
                    let request = scale_access(scaled, &attributes);
                    let started = Instant::now();
                    let _ = engine.decide_reference(&request);
                    reference.push(started.elapsed());
                }
                reference.sort_unstable();
                if lines == 100_000 {
                    let worst = figures[1].max(figures[3]);
                    report.target(
                        &format!("uncached decision p99 at 100,000 lines, {shape:?}"),
                        format!(
                            "allowed {} µs, denied {} µs",
                            micros(figures[1]),
                            micros(figures[3])
                        ),
                        "≤ 5 µs".into(),
                        worst <= Duration::from_micros(5),
                    );
                }
                report.row(format!(
                    "| {shape:?} | {lines} | {} | {} | {} | {} | {} | {} |",
                    engine.is_compiled(),
                    micros(figures[0]),
                    micros(figures[1]),
                    micros(figures[2]),
                    micros(figures[3]),
                    micros(reference[reference.len() / 2])
                ));
            }
        }
    }

    if only.wants('e') {
        report.section(
            "(e) Start-up and reload at 100,000 policy lines",
            "| measure | value |",
        );
        let big = write_policy_dir(Shape::Rbac, 100_000);
        let server = Server::start(vigil, big.path(), &[], settings.pinned);
        report.row(format!(
            "| start-up to listening | {:.0} ms |",
            server.started_in.as_secs_f64() * 1e3
        ));
        report.target(
            "start-up with 100,000 policy lines",
            format!("{:.0} ms", server.started_in.as_secs_f64() * 1e3),
            "≤ 1 s".into(),
            server.started_in <= Duration::from_secs(1),
        );
        report.row(format!(
            "| RSS after start-up | {:.1} MB |",
            server.memory("VmRSS") as f64 / 1e6
        ));
        let mut admin = PolicyAdminClient::new(server.channel(false).await);
        let policy_file = big.path().join("policy.csv");
        let text = std::fs::read_to_string(&policy_file).expect("policy");
        std::fs::write(&policy_file, format!("{text}p, role1, dataset-new, read\n")).expect("edit");
        let started = Instant::now();
        admin
            .reload_policies(ReloadPoliciesRequest {})
            .await
            .expect("reload");
        report.row(format!(
            "| reload (ReloadPolicies RPC, changed set) | {:.0} ms |",
            started.elapsed().as_secs_f64() * 1e3
        ));
        let requests: Vec<AuthorizeRequest> = scale_requests(Shape::Rbac, 100_000, true, 64)
            .into_iter()
            .map(|(s, o, _)| AuthorizeRequest {
                subject: s,
                object: o,
                action: "read".into(),
                ..Default::default()
            })
            .collect();
        let quiet = drive(
            &server,
            false,
            16,
            Call::Authorize(requests.clone()),
            Generator::Tonic,
            settings,
        )
        .await;
        let reloading = {
            let admin_channel = server.channel(false).await;
            let reloads = tokio::spawn(async move {
                let mut admin = PolicyAdminClient::new(admin_channel);
                let mut count = 0;
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if admin
                        .reload_policies(ReloadPoliciesRequest {})
                        .await
                        .is_ok()
                    {
                        count += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                count
            });
            let m = drive(
                &server,
                false,
                16,
                Call::Authorize(requests),
                Generator::Tonic,
                settings,
            )
            .await;
            reloads.abort();
            m
        };
        report.row(format!(
            "| Authorize p99, 16 streams, no reload | {} µs |",
            micros(quiet.percentile(0.99))
        ));
        report.row(format!(
            "| Authorize p99, 16 streams, reloading every 300 ms | {} µs (errors: {}) |",
            micros(reloading.percentile(0.99)),
            reloading.errors
        ));
        report.row(format!(
            "| peak RSS with 100,000 lines | {:.1} MB |",
            server.memory("VmHWM") as f64 / 1e6
        ));
        drop(server);
    }

    if only.wants('f') {
        report.section(
            "(f) Audit log: append and verify, in process",
            "| measure | value |",
        );
        let samples = if quick { 200 } else { 1000 };
        let (p50, p99) = fdatasync_cost(samples, settings);
        report.row(format!(
            "| fdatasync after a 350-byte append (disk cost{}) | p50 {} µs, p99 {} µs |",
            if settings.pinned {
                ", from the server's core"
            } else {
                ""
            },
            micros(p50),
            micros(p99)
        ));
        if settings.pinned {
            let (p50, p99) = fdatasync_probe(samples);
            report.row(format!(
                "| the same from the generator's core | p50 {} µs, p99 {} µs |",
                micros(p50),
                micros(p99)
            ));
        }
        for sync in [SyncMode::Batch, SyncMode::Always, SyncMode::Off] {
            let dir = tempfile::tempdir().expect("temp dir");
            let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            let (log, _) = AuditLog::open(
                AuditOptions::new(dir.path(), sync, key),
                Record::new("startup"),
            )
            .expect("open audit");
            let log = Arc::new(log);
            let deadline = Instant::now() + settings.duration;
            let mut tasks = Vec::new();
            for writer in 0..64 {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let mut record = Record::new("decision");
                    record.sub = Some(format!("user{writer}"));
                    record.obj = Some("crm.customers".into());
                    record.act = Some("read".into());
                    record.allowed = Some(true);
                    record.reason = Some("allowed by policy.csv:30 [p, analyst, crm.*, read, allow] via alice → analyst".into());
                    record.pv = Some("0123456789abcdef".into());
                    if log.append_one(record).await.is_ok() {
                        n += 1;
                    }
                }
                n
            }));
            }
            let started = Instant::now();
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("writer");
            }
            let rate = total as f64 / started.elapsed().as_secs_f64();
            report.row(format!(
                "| append, sync {sync:?}, 64 concurrent writers | {rate:.0} records/s |"
            ));
            if sync == SyncMode::Batch && saturated_batch_authorize > 0.0 {
                report.target(
                    "batch append is not the bottleneck",
                    format!(
                        "{rate:.0} records/s vs Authorize saturated {saturated_batch_authorize:.0} req/s"
                    ),
                    "append ≥ Authorize".into(),
                    rate >= saturated_batch_authorize,
                );
            }
            if sync == SyncMode::Off {
                let _ = log.close(Record::new("shutdown")).await;
                let bytes: u64 = std::fs::read_dir(dir.path())
                    .expect("dir")
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum();
                let record_size = bytes as f64 / (total + 2) as f64;
                report.row(format!(
                    "| average record size on disk | {record_size:.0} bytes |"
                ));
                report.target(
                    "decision record on disk",
                    format!("{record_size:.0} bytes"),
                    "≤ 400 bytes".into(),
                    record_size <= 400.0,
                );
                let started = Instant::now();
                let verified = verify_dir(dir.path(), &[], None).expect("the log verifies");
                let took = started.elapsed().as_secs_f64();
                let rate = verified.records as f64 / took;
                report.row(format!(
                    "| verify ({} records) | {rate:.0} records/s, {:.0} MB/s |",
                    verified.records,
                    verified.bytes as f64 / took / 1e6
                ));
                report.target(
                    "audit verify",
                    format!("{rate:.0} records/s"),
                    "≥ 1,000,000 records/s".into(),
                    rate >= 1e6,
                );
            }
        }
    }
}
