//! Test harness: starts vigil and talks to it over real gRPC, on TCP and on
//! a Unix socket. By default the server runs inside the test process
//! (`App::build` + `App::serve` on port 0, on a runtime of its own, as
//! `vigil serve` runs it); tests of signals, SIGKILL, resource limits or
//! log output start the real binary with [`Launch::subprocess`].
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use tonic::transport::{Channel, Endpoint, Uri};
use vigil::{
    cli::{Cli, Command as VigilCommand},
    config::Config,
    listen::{ListenAddr, Listener, Plane},
    proto::{access_control_client::AccessControlClient, AuthorizeRequest},
    server::App,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_vigil");

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_path("tests/fixtures").join(relative)
}

/// A running vigil with its own scratch directory.
pub struct Vigil {
    running: Running,
    pub tcp: Option<String>,
    pub unix: Option<PathBuf>,
    /// The admin socket, with [`Launch::with_admin`].
    pub admin: Option<PathBuf>,
    /// The metrics address, with `--metrics-listen` (in process only).
    pub metrics: Option<String>,
    /// The HTTP/JSON API address, with `--http-listen` (in process only).
    pub http: Option<String>,
    pub dir: tempfile::TempDir,
    pub audit_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

/// How a vigil runs: a server inside this process, or the binary.
enum Running {
    InProcess(InProcess),
    Child(Child),
    Stopped,
}

/// `vigil serve` inside the test process, on a thread with its own runtime.
struct InProcess {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

/// How a stopped vigil ended.
#[derive(Debug)]
pub struct Exit {
    success: bool,
    description: String,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.success
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        Exit {
            success: status.success(),
            description: status.to_string(),
        }
    }
}

pub struct Launch {
    pub policies: PathBuf,
    pub args: Vec<String>,
    /// A program (and its arguments) that runs vigil, e.g. `prlimit ...`;
    /// implies a subprocess.
    pub wrapper: Vec<String>,
    pub tcp: bool,
    pub unix: bool,
    /// Environment of the subprocess; implies one.
    pub envs: Vec<(String, String)>,
    /// Run the real binary, for signals, SIGKILL, limits and log output.
    pub subprocess: bool,
    /// Also serve the admin services on a Unix socket.
    pub admin: bool,
}

impl Launch {
    pub fn new(policies: impl Into<PathBuf>) -> Launch {
        Launch {
            policies: policies.into(),
            args: Vec::new(),
            wrapper: Vec::new(),
            tcp: true,
            unix: false,
            envs: Vec::new(),
            subprocess: false,
            admin: false,
        }
    }

    /// An admin socket (PolicyAdmin, Audit) beside the data listeners.
    pub fn with_admin(mut self) -> Launch {
        self.admin = true;
        self
    }

    /// The real `vigil` binary as a child process.
    pub fn subprocess(mut self) -> Launch {
        self.subprocess = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Launch {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn with_unix(mut self) -> Launch {
        self.unix = true;
        self
    }

    pub fn start(self) -> Vigil {
        Vigil::launch(self, None)
    }
}

impl Vigil {
    /// vigil on the shipped example policies, trusted auth, TCP.
    pub fn example() -> Vigil {
        Launch::new(repo_path("policies")).start()
    }

    /// Starts vigil reusing an existing scratch directory (for restarts).
    pub fn restart(launch: Launch, dir: tempfile::TempDir) -> Vigil {
        Vigil::launch(launch, Some(dir))
    }

    fn launch(launch: Launch, dir: Option<tempfile::TempDir>) -> Vigil {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        if launch.subprocess || !launch.wrapper.is_empty() || !launch.envs.is_empty() {
            Vigil::spawn(launch, dir)
        } else {
            Vigil::in_process(launch, dir)
        }
    }

    /// The arguments `vigil serve` gets, as the command line would give them.
    fn serve_args(launch: &Launch, audit_dir: &Path, socket: &Path) -> Vec<String> {
        let mut args = vec![
            "serve".to_owned(),
            "--policies".to_owned(),
            launch.policies.display().to_string(),
            "--audit-dir".to_owned(),
            audit_dir.display().to_string(),
        ];
        args.extend(launch.args.iter().cloned());
        if launch.tcp {
            args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        if launch.unix {
            args.extend(["--listen".to_owned(), format!("unix:{}", socket.display())]);
        }
        if launch.admin {
            let admin = socket.with_file_name("admin.sock");
            args.extend([
                "--admin-listen".to_owned(),
                format!("unix:{}", admin.display()),
            ]);
        }
        args
    }

    fn in_process(launch: Launch, dir: tempfile::TempDir) -> Vigil {
        let audit_dir = dir.path().join("audit");
        let socket = dir.path().join("vigil.sock");
        let mut argv = vec!["vigil".to_owned()];
        argv.extend(Vigil::serve_args(&launch, &audit_dir, &socket));
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let VigilCommand::Serve(args) = cli.command else {
            unreachable!("the arguments start with serve")
        };
        let mut config = Config::from_args(*args).unwrap_or_else(|e| panic!("{e}"));
        // Relative paths (keyring, dev secret) resolve in the scratch
        // directory, as the subprocess's working directory makes them.
        let home = dir.path().to_owned();
        let rebase = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = home.join(&*path);
            }
        };
        rebase(config.keyring.path_mut());
        rebase(&mut config.policies);
        if let vigil::authn::AuthSettings::Jwt(jwt) = &mut config.auth {
            if let vigil::authn::JwtKeySource::DevSecret(path) = &mut jwt.keys {
                rebase(path);
            }
        }
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<Result<Vec<(Plane, ListenAddr)>, String>>();
        let thread = std::thread::spawn(move || {
            let runtime = config.runtime().map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let started = async {
                    let listeners = Listener::bind_planes(
                        &config.listeners,
                        &config.admin_listeners,
                        &config.metrics_listeners,
                        &config.http_listeners,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    let app = App::build(config).await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((listeners, app))
                };
                let (listeners, app) = match started.await {
                    Ok(started) => started,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(listeners
                    .iter()
                    .map(|(plane, listener)| (*plane, listener.local_addr()))
                    .collect()));
                app.serve(listeners, async {
                    let _ = stop.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        let addresses = ready
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("vigil did not start in time: {e}"))
            .unwrap_or_else(|e| panic!("vigil did not start: {e}"));
        let mut vigil = Vigil {
            running: Running::InProcess(InProcess { shutdown, thread }),
            tcp: None,
            unix: None,
            admin: None,
            metrics: None,
            http: None,
            dir,
            audit_dir,
            stderr: Arc::default(),
        };
        for (plane, address) in addresses {
            match (plane, address) {
                (Plane::Admin, ListenAddr::Unix(path)) => vigil.admin = Some(path),
                (Plane::Metrics, address) => vigil.metrics = Some(address.to_string()),
                (Plane::Http, address) => vigil.http = Some(address.to_string()),
                (_, ListenAddr::Tcp(addr)) => vigil.tcp = Some(addr.to_string()),
                (_, ListenAddr::Unix(path)) => vigil.unix = Some(path),
            }
        }
        vigil
    }

    fn spawn(launch: Launch, dir: tempfile::TempDir) -> Vigil {
        let audit_dir = dir.path().join("audit");
        let socket = dir.path().join("vigil.sock");
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        command
            .args(Vigil::serve_args(&launch, &audit_dir, &socket))
            .current_dir(dir.path())
            .env("VIGIL_LOG", "info")
            .env_remove("VIGIL_AUTH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &launch.envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn vigil");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("admin listening on ") {
                    let _ = tx.send(format!("admin {address}"));
                } else if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let wanted = usize::from(launch.tcp) + usize::from(launch.unix) + usize::from(launch.admin);
        let mut vigil = Vigil {
            running: Running::Child(child),
            tcp: None,
            unix: None,
            admin: None,
            metrics: None,
            http: None,
            dir,
            audit_dir,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut found = 0;
        while found < wanted {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(address) => {
                    found += 1;
                    if let Some(admin) = address.strip_prefix("admin unix:") {
                        vigil.admin = Some(PathBuf::from(admin));
                    } else if let Some(path) = address.strip_prefix("unix:") {
                        vigil.unix = Some(PathBuf::from(path));
                    } else {
                        vigil.tcp = Some(address);
                    }
                }
                Err(_) => {
                    if let Some(status) = vigil.child().try_wait().unwrap() {
                        panic!(
                            "vigil exited with {status} before listening:\n{}",
                            vigil.stderr()
                        );
                    }
                    if Instant::now() > deadline {
                        panic!("vigil did not start listening in time:\n{}", vigil.stderr());
                    }
                }
            }
        }
        vigil
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.running {
            Running::Child(child) => child,
            _ => panic!("this test needs the real binary: start it with Launch::subprocess()"),
        }
    }

    /// What the subprocess wrote on stderr.
    pub fn stderr(&self) -> String {
        assert!(
            matches!(self.running, Running::Child(_) | Running::Stopped),
            "this test reads vigil's log: start it with Launch::subprocess()"
        );
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Child(child) => child.id(),
            _ => panic!("this test signals vigil: start it with Launch::subprocess()"),
        }
    }

    pub async fn channel(&self) -> Channel {
        let address = self.tcp.as_ref().expect("vigil listens on TCP");
        Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .expect("connect over TCP")
    }

    pub async fn unix_channel(&self) -> Channel {
        socket_channel(self.unix.clone().expect("vigil listens on a Unix socket")).await
    }

    /// A channel to the admin socket ([`Launch::with_admin`]).
    pub async fn admin_channel(&self) -> Channel {
        socket_channel(self.admin.clone().expect("vigil serves an admin socket")).await
    }
}

async fn socket_channel(path: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect over the Unix socket")
}

impl Vigil {
    pub async fn client(&self) -> AccessControlClient<Channel> {
        AccessControlClient::new(self.channel().await)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Orderly shutdown (SIGTERM for a subprocess), then wait for the end
    /// without blocking the test's runtime (its client connections must be
    /// able to say goodbye).
    pub async fn terminate(self) -> (Exit, String, tempfile::TempDir) {
        tokio::task::spawn_blocking(move || self.terminate_blocking())
            .await
            .unwrap()
    }

    /// Orderly shutdown, then wait for the end.
    pub fn terminate_blocking(mut self) -> (Exit, String, tempfile::TempDir) {
        let exit = match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::InProcess(server) => {
                let _ = server.shutdown.send(());
                let deadline = Instant::now() + Duration::from_secs(30);
                while !server.thread.is_finished() {
                    assert!(Instant::now() < deadline, "vigil did not stop in time");
                    std::thread::sleep(Duration::from_millis(10));
                }
                let result = server.thread.join().expect("the server thread panicked");
                Exit {
                    success: result.is_ok(),
                    description: match result {
                        Ok(()) => "stopped".to_owned(),
                        Err(e) => format!("failed: {e}"),
                    },
                }
            }
            running => {
                self.running = running;
                self.signal("TERM");
                self.wait(Duration::from_secs(30)).into()
            }
        };
        let stderr = self.stderr.lock().unwrap().clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (exit, stderr, dir)
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(self) -> tempfile::TempDir {
        tokio::task::spawn_blocking(move || self.kill_blocking())
            .await
            .unwrap()
    }

    pub fn kill_blocking(mut self) -> tempfile::TempDir {
        self.signal("KILL");
        self.wait(Duration::from_secs(30));
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.running = Running::Stopped;
                return status;
            }
            if Instant::now() > deadline {
                panic!("vigil did not exit in time:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Child(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::InProcess(server) => {
                // Stopped, not waited for: a test that cares calls
                // terminate().
                let _ = server.shutdown.send(());
            }
            Running::Stopped => {}
        }
    }
}

pub fn request(subject: &str, object: &str, action: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        subject: subject.into(),
        object: object.into(),
        action: action.into(),
        domain: String::new(),
        attributes: Default::default(),
    }
}

/// Runs a vigil subcommand to completion.
pub fn vigil_command(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run vigil")
}

/// Runs a vigil subcommand with `input` on its stdin.
pub fn vigil_command_with_input(args: &[&str], cwd: &Path, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vigil");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("vigil finishes")
}

/// Every audit line of a directory, in order.
pub fn audit_lines(audit_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("audit-")
                && p.extension().is_some_and(|e| e == "jsonl")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            text.lines()
                .map(|l| (file.clone(), l.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An Envoy ext_authz `CheckRequest` as Envoy fills it (envoy-types'
/// messages, not vigil's proto): the HTTP request on `api.example.com` and
/// the mTLS peer principal of its source (empty: none).
pub fn envoy_check(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    principal: &str,
) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    use envoy_types::pb::envoy::service::auth::v3::{
        attribute_context::{HttpRequest, Peer, Request},
        AttributeContext, CheckRequest,
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                principal: principal.into(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The port of a `HOST:PORT` address vigil reported.
pub fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} has no port"))
}

/// One HTTP/1.1 request: (status, headers, body).
pub async fn http_call(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// A copy of the shipped example policies (model, policy, classification,
/// cases) to change in a test.
pub fn example_policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "model.conf",
        "policy.csv",
        "policy_test.toml",
        "classification.toml",
    ] {
        std::fs::copy(repo_path("policies").join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// A config file whose `[http]` mapping serves the gateway tests: the
/// subject in `x-user`, `/v1/datasets/{dataset}/rows` → `{dataset}`.
pub fn datasets_config(dir: &Path) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(
        &path,
        "[http]\nsubject_header = \"x-user\"\n\
         [[http.routes]]\npath = \"/v1/datasets/{dataset}/rows\"\nobject = \"{dataset}\"\n",
    )
    .unwrap();
    path
}
