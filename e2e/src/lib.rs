//! The end-to-end harness: what `scripts/e2e` prepared, and the processes
//! a test starts and must stop.
//!
//! These tests need programs a bare machine lacks (a Python with grpcio,
//! later nginx, Prometheus, PostgreSQL, Redis), so they live in their own
//! workspace member that `cargo test` at the root never runs. `scripts/e2e`
//! installs what is missing and runs them; run without it, they fail and
//! say why, rather than skip.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// The repository root: the README's commands are written to run there.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the repository")
        .to_path_buf()
}

/// Fails the test unless `scripts/e2e` prepared the machine: a silent skip
/// would pass a suite that checked nothing.
pub fn require_prepared() {
    if std::env::var_os("VIGIL_E2E").is_none() {
        panic!(
            "the end-to-end tests need what scripts/e2e installs and starts; \
             run `scripts/e2e` instead of `cargo test -p vigil-e2e`"
        );
    }
}

/// Where `scripts/e2e` builds the release binary the tests run (its own
/// target directory, built for compile time rather than speed: the tests
/// check behaviour). Commands the tests run (the README's `cargo run
/// --release`, `cargo install`) are pointed at it too.
pub fn build_dir() -> PathBuf {
    std::env::var_os("VIGIL_E2E_TARGET")
        .map(|dir| repo_root().join(dir))
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The vigil binary `scripts/e2e` built.
pub fn vigil_binary() -> PathBuf {
    build_dir().join("release/vigil")
}

/// Where a test may write logs and scratch files, kept after the run.
pub fn scratch_dir() -> PathBuf {
    let dir = repo_root().join("target/e2e");
    std::fs::create_dir_all(&dir).expect("target/e2e can be created");
    dir
}

/// A shell command run in its own process group, stopped (group and all)
/// when dropped: a server started by `cargo run` is a grandchild.
pub struct Background {
    child: Child,
    what: String,
    log: PathBuf,
    /// Every line it printed on standard output so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Background {
    /// Starts `script` under bash at the repository root and waits until a
    /// line of its standard output starts with `ready_prefix`.
    pub fn start(
        script: &str,
        envs: &[(&str, &str)],
        ready_prefix: &str,
        wait: Duration,
    ) -> Background {
        use std::os::unix::process::CommandExt;
        let log = scratch_dir().join(format!("background-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file opens");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", build_dir())
            .envs(envs.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{script}`: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        let prefix = ready_prefix.to_owned();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("  | {line}");
                seen.lock().unwrap().push(line.clone());
                if !told && line.starts_with(&prefix) {
                    told = ready_tx.send(()).is_ok();
                }
            }
        });
        let mut background = Background {
            child,
            what: script.to_owned(),
            log,
            lines,
        };
        if ready_rx.recv_timeout(wait).is_err() {
            let status = background.child.try_wait().ok().flatten();
            panic!(
                "`{script}` did not print `{ready_prefix}…` within {wait:?} (exit: {status:?}); \
                 its log:\n{}",
                background.log_text()
            );
        }
        background
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the process the script runs
    /// (its `exec`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    /// The rest of the first output line starting with `prefix`.
    pub fn printed(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to the whole group, then waits; SIGKILL if it lingers.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; make sure nothing of the group is left.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &group])
                    .stderr(Stdio::null())
                    .status();
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("`{}` ignored SIGTERM for 15 s; killing it", self.what);
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// A TCP port free at the time of asking, for a program that must be told
/// its port rather than report the one it got.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on loopback")
        .port()
}

/// One HTTP/1.1 GET (status code, body), chunked bodies decoded: enough
/// for the JSON APIs of the programs the tests start.
pub fn http_get(address: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `within`.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {within:?}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A throwaway PostgreSQL cluster (`initdb` + `pg_ctl` on a temporary
/// directory and port, Debian's binaries from `VIGIL_E2E_PG_BIN`), run as
/// the `postgres` user when the tests run as root (initdb refuses root).
/// Stopped and removed when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_in(Path::new("/tmp"))
    }

    /// A cluster whose files live under `base` (the benchmark keeps them
    /// in memory, off the disk whose fdatasync it measures).
    pub fn start_in(base: &Path) -> Postgres {
        let bin = PathBuf::from(
            std::env::var_os("VIGIL_E2E_PG_BIN")
                .expect("scripts/e2e exports VIGIL_E2E_PG_BIN, PostgreSQL's bin directory"),
        );
        let dir = tempfile::Builder::new()
            .prefix("vigil-pg")
            .tempdir_in(base)
            .expect("a temporary directory");
        let postgres = Postgres {
            dir,
            bin,
            port: free_port(),
        };
        if running_as_root() {
            // The cluster's files belong to the user that runs it.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(postgres.dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the cluster directory");
        }
        let data = postgres.dir.path().join("data");
        postgres.run(&format!(
            "{} -D {} -U vigil --auth=trust -E UTF8 >/dev/null",
            postgres.bin.join("initdb").display(),
            data.display()
        ));
        postgres.start_server();
        let status = Command::new(postgres.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &postgres.port.to_string()])
            .args([
                "-U",
                "vigil",
                "-d",
                "postgres",
                "-qc",
                "CREATE DATABASE witness",
            ])
            .status()
            .expect("psql runs");
        assert!(status.success(), "CREATE DATABASE witness");
        postgres
    }

    /// Runs `script` as the cluster's owner.
    fn run(&self, script: &str) {
        let status = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "bash", "-c", script])
                .status()
        } else {
            Command::new("bash").args(["-c", script]).status()
        }
        .expect("the PostgreSQL tools run");
        assert!(status.success(), "`{script}` failed");
    }

    pub fn start_server(&self) {
        self.run(&format!(
            "{} -D {} -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' -l {} -w start >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display(),
            self.port,
            self.dir.path().display(),
            self.dir.path().join("server.log").display(),
        ));
    }

    /// Stops the server (fast shutdown): an outage the tests ride through.
    pub fn stop_server(&self) {
        self.run(&format!(
            "{} -D {} -m fast -w stop >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.dir.path().join("data").display(),
        ));
    }

    /// Pins the server (and every backend it forks) to one CPU: a benchmark
    /// keeps the store off the core it measures vigil on.
    pub fn pin_to_cpu(&self, cpu: usize) {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("postmaster.pid names the server");
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid])
            .stdout(Stdio::null())
            .status();
    }

    /// The connection string vigil is given.
    pub fn url(&self) -> String {
        format!("postgres://vigil@127.0.0.1:{}/witness", self.port)
    }

    /// One SQL query's rows, `|`-separated, via psql.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// The same, or the error (a table vigil has not created yet).
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "vigil", "-d", "witness", "-AtXqc", sql])
            .output()
            .expect("psql runs");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{} {} -D {} -m immediate stop >/dev/null 2>&1",
                if running_as_root() {
                    "runuser -u postgres --"
                } else {
                    ""
                },
                self.bin.join("pg_ctl").display(),
                self.dir.path().join("data").display(),
            ))
            .status();
    }
}

/// Whether this process runs as root: the owner of its /proc entry.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A throwaway Redis (Debian's `redis-server`) on a temporary port and
/// directory, without persistence: a restart loses every budget, the
/// harshest outage the limits can see. Stopped when dropped.
pub struct Redis {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("vigil-redis")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        let mut redis = Redis {
            dir,
            port: free_port(),
            server: None,
        };
        redis.start_server();
        redis
    }

    /// Starts the server and waits until it answers PING.
    pub fn start_server(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/e2e installs it)");
        self.server = Some(child);
        eventually("redis-server answers PING", Duration::from_secs(20), || {
            self.ping().then_some(())
        });
    }

    /// Stops the server (SIGTERM, then waits): an outage to ride through.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Pins the server to one CPU: a benchmark keeps the store off the
    /// core it measures vigil on.
    pub fn pin_to_cpu(&self, cpu: usize) {
        if let Some(child) = &self.server {
            let _ = Command::new("taskset")
                .args(["-a", "-p", "-c", &cpu.to_string(), &child.id().to_string()])
                .stdout(Stdio::null())
                .status();
        }
    }

    /// The URL vigil is given (`--limits-backend`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every record of an audit directory's segments (`audit-*.jsonl`), in
/// file order.
pub fn audit_records(audit_dir: &Path) -> Vec<serde_json::Value> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(audit_dir)
        .expect("the audit directory reads")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "jsonl")
                && path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("audit-"))
        })
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .expect("a segment reads")
                .lines()
                .map(|line| serde_json::from_str(line).expect("a record is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}
