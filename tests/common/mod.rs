//! Test harness: starts the real `vigil` binary and talks to it over real
//! gRPC, on TCP and on a Unix socket.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::transport::{Channel, Endpoint, Uri};
use vigil::proto::{access_control_client::AccessControlClient, AuthorizeRequest};

pub const BIN: &str = env!("CARGO_BIN_EXE_vigil");

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_path("tests/fixtures").join(relative)
}

/// A running vigil process with its own scratch directory.
pub struct Vigil {
    child: Option<Child>,
    pub tcp: Option<String>,
    pub unix: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    pub audit_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

pub struct Launch {
    pub policies: PathBuf,
    pub args: Vec<String>,
    /// A program (and its arguments) that runs vigil, e.g. `prlimit ...`.
    pub wrapper: Vec<String>,
    pub tcp: bool,
    pub unix: bool,
    pub envs: Vec<(String, String)>,
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
        }
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
            .arg("serve")
            .arg("--policies")
            .arg(&launch.policies)
            .arg("--audit-dir")
            .arg(&audit_dir)
            .args(&launch.args)
            .current_dir(dir.path())
            .env("VIGIL_LOG", "info")
            .env_remove("VIGIL_AUTH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &launch.envs {
            command.env(key, value);
        }
        if launch.tcp {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        if launch.unix {
            command
                .arg("--listen")
                .arg(format!("unix:{}", socket.display()));
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
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let wanted = usize::from(launch.tcp) + usize::from(launch.unix);
        let mut vigil = Vigil {
            child: Some(child),
            tcp: None,
            unix: None,
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
                    match address.strip_prefix("unix:") {
                        Some(path) => vigil.unix = Some(PathBuf::from(path)),
                        None => vigil.tcp = Some(address),
                    }
                }
                Err(_) => {
                    if let Some(status) = vigil.child.as_mut().unwrap().try_wait().unwrap() {
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

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
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
        let path = self.unix.clone().expect("vigil listens on a Unix socket");
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

    /// SIGTERM, then wait for the exit without blocking the test's runtime
    /// (its client connections must be able to say goodbye).
    pub async fn terminate(self) -> (ExitStatus, String, tempfile::TempDir) {
        tokio::task::spawn_blocking(move || self.terminate_blocking())
            .await
            .unwrap()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate_blocking(mut self) -> (ExitStatus, String, tempfile::TempDir) {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(30));
        let stderr = self.stderr();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, stderr, dir)
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
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
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
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
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
