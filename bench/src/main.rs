//! vigil's benchmark: builds and starts the real `vigil` binary on the
//! shipped example policies, drives it with a tonic load generator (and,
//! for saturation, the lean generator of lean.rs), and measures the
//! in-process costs that do not need the network. Prints a table and
//! writes bench/RESULTS.md.
//!
//! ```sh
//! cargo run --release -p vigil-bench            # full run (~4 minutes)
//! cargo run --release -p vigil-bench -- --quick # shorter runs
//! cargo run --release -p vigil-bench -- --only a,f # some sections
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
mod sections;

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use envoy_types::pb::envoy::service::auth::v3::{
    authorization_client::AuthorizationClient, CheckRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use vigil::{
    audit::{verify::verify_dir, AuditLog, AuditOptions, Record},
    authz::{AccessRequest, Engine, Origin, RuleLine},
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
    // A binary built elsewhere (another commit, for a before/after run in
    // alternation) is measured as it is.
    if let Some(given) = std::env::var_os("VIGIL_BENCH_BIN") {
        return PathBuf::from(given);
    }
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
    /// The HTTP/JSON API's address, with `--http-listen`.
    http: String,
    /// The CA that signed the server's certificate, with `--tls-cert`: the
    /// generator's channels speak TLS.
    tls_ca: Option<String>,
    unix: PathBuf,
    /// The admin socket (PolicyAdmin, Audit).
    admin: PathBuf,
    _dir: tempfile::TempDir,
    started_in: Duration,
}

impl Server {
    fn start(vigil: &Path, policies: &Path, extra: &[&str], pinned: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("vigil.sock");
        let admin = dir.path().join("admin.sock");
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
            .arg("--admin-listen")
            .arg(format!("unix:{}", admin.display()))
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
        let mut http = String::new();
        let mut seen = 0;
        // Every announced line is read: vigil must not write to a closed pipe.
        let expected = 3
            + usize::from(extra.contains(&"--metrics-listen"))
            + usize::from(extra.contains(&"--http-listen"));
        while seen < expected {
            let line = lines
                .next()
                .expect("vigil exited before listening")
                .expect("read stdout");
            if let Some(address) = line.strip_prefix("http listening on ") {
                seen += 1;
                http = address.to_owned();
            } else if line.starts_with("admin listening on ")
                || line.starts_with("metrics listening on ")
            {
                seen += 1;
            } else if let Some(address) = line.strip_prefix("listening on ") {
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
            http,
            tls_ca: None,
            unix: socket,
            admin,
            _dir: dir,
            started_in,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A channel to the admin socket.
    async fn admin_channel(&self) -> Channel {
        unix_channel(self.admin.clone()).await
    }

    async fn channel(&self, unix: bool) -> Channel {
        if unix {
            unix_channel(self.unix.clone()).await
        } else if let Some(ca) = &self.tls_ca {
            let port = self.tcp.rsplit(':').next().expect("HOST:PORT");
            Endpoint::from_shared(format!("https://localhost:{port}"))
                .expect("endpoint")
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        .domain_name("localhost"),
                )
                .expect("TLS config")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect tls")
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

async fn unix_channel(path: PathBuf) -> Channel {
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
    /// Envoy's ext_authz `Check`, as Envoy sends it.
    ExtAuthz(Vec<CheckRequest>),
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
            Call::ExtAuthz(requests) => (
                "/envoy.service.auth.v3.Authorization/Check",
                requests.iter().map(lean::frame).collect(),
                1,
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
    /// Nothing measured yet.
    fn empty() -> Measured {
        Measured {
            calls: 0,
            items: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            cpu: Duration::ZERO,
            generator_cpu: Duration::ZERO,
            errors: 0,
        }
    }

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

/// Durable Authorize of the mix from the lean generator over TCP at
/// `streams` (1,024 saturates the server): the yardstick most sections
/// compare against.
async fn authorize_load(server: &Server, streams: usize, settings: &Settings) -> Measured {
    drive(
        server,
        false,
        streams,
        Call::Authorize(authorize_mix()),
        Generator::Lean,
        settings,
    )
    .await
}

/// Keeps the faster measurement of one scenario: best of turns, as the
/// machine drifts between them.
fn keep_faster(best: &mut Option<Measured>, m: Measured) {
    if best
        .as_ref()
        .is_none_or(|b| m.throughput() > b.throughput())
    {
        *best = Some(m);
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
                        DataMaskingClient::new(channel.clone()),
                        AuthorizationClient::new(channel),
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
                        (None, Some((access, health, masking, ext_authz))) => match &call {
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
                            Call::ExtAuthz(requests) => ext_authz
                                .check(requests[n % requests.len()].clone())
                                .await
                                .is_ok(),
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
    measure(server, settings, run).await
}

/// What one load task reports: calls, items, errors, latencies (100 ns).
type LoadTally = (u64, u64, u64, Vec<u32>);

/// A warm-up, then one measured period of the load `run(duration,
/// record_latencies)` starts, with the server's and the generator's CPU
/// over it.
async fn measure<F>(server: &Server, settings: &Settings, run: F) -> Measured
where
    F: Fn(Duration, bool) -> Vec<tokio::task::JoinHandle<LoadTally>>,
{
    for task in run(settings.warmup, false) {
        let _ = task.await;
    }
    let cpu_before = server.cpu();
    let generator_before = process_cpu(std::process::id());
    let started = Instant::now();
    let mut measured = Measured::empty();
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
        let _ = writeln!(out, "- command: `cargo run --release -p vigil-bench`");
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
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
    /// RBAC with `priority(p.eft) || deny`: the first matching rule decides.
    Priority,
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
        Shape::Priority => "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n[role_definition]\ng = _, _\n[policy_effect]\ne = priority(p.eft) || deny\n[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n",
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
            Shape::Priority => vec![role, format!("dataset{k}"), "read".into(), "allow".into()],
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

/// What every section reads, and what sections hand to later ones.
pub(crate) struct Run<'a> {
    vigil: &'a Path,
    settings: &'a Settings,
    report: &'a mut Report,
    quick: bool,
    policies: &'a Path,
    /// Highest server RSS seen so far, for the memory target.
    peak_rss: u64,
    /// Saturated durable Authorize (s), the audit section's yardstick (f).
    saturated_batch_authorize: f64,
}

async fn run(vigil: &Path, settings: &Settings, report: &mut Report, quick: bool, only: &Only) {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut run = Run {
        vigil,
        settings,
        report,
        quick,
        policies: &policies,
        peak_rss: 0,
        saturated_batch_authorize: 0.0,
    };
    if only.wants('a') {
        sections::authorize::run(&mut run).await;
    }
    if only.wants('s') {
        sections::saturated::run(&mut run).await;
    }
    if only.wants('b') {
        sections::batch_and_mask::run(&mut run).await;
    }
    if only.wants('h') {
        sections::stages::run(&mut run).await;
    }
    if only.wants('d') {
        sections::scale::run(&mut run).await;
        sections::scale::pattern_roles(&mut run).await;
    }
    if only.wants('e') {
        sections::reload::run(&mut run).await;
    }
    if only.wants('f') {
        sections::audit::run(&mut run).await;
    }
    if only.wants('g') {
        sections::gateways::run(&mut run).await;
    }
    if only.wants('o') {
        sections::observability::run(&mut run).await;
    }
    if only.wants('w') {
        sections::witness::run(&mut run).await;
    }
    if only.wants('l') {
        sections::limits::run(&mut run).await;
    }
}
