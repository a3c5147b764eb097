//! Every snippet of README.md, run as written.
//!
//! The README is the first thing a user tries; a command in it that fails
//! is a bug. This test reads every fenced block and runs it at the
//! repository root, in order, the way a reader pasting them would:
//! `sh` blocks under bash (a failing command fails the block), `python`
//! blocks under the Python `scripts/e2e` prepared (once per transport and
//! auth mode), excerpts of shipped files compared with those files.
//!
//! A block says how it is run in an HTML comment on the line before its
//! fence, invisible on GitHub: `<!-- e2e: DIRECTIVE; DIRECTIVE -->`.
//! - `serve` — a server: started in the background (stopping the one
//!   before), ready when it prints `listening on`;
//! - `expect: TEXT` — the output must contain TEXT;
//! - `exit: N` — the expected exit code (default 0);
//! - `excerpt-of: PATH` — the block's lines appear, in order, in PATH;
//! - `write: PATH` then `then: COMMAND` — the block is saved to PATH and
//!   COMMAND run on it (config and case files);
//! - `skip: REASON` — not run, and the reason is printed.
//!
//! A block of any other language without a directive fails the test, so a
//! new snippet cannot go unchecked by accident.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use vigil_e2e::{repo_root, require_prepared, Background};

#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    body: String,
    directives: Vec<(String, String)>,
}

impl Block {
    fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn place(&self) -> String {
        format!("README.md:{} ({})", self.line, self.lang)
    }
}

const DIRECTIVES: [&str; 7] = [
    "serve",
    "expect",
    "exit",
    "excerpt-of",
    "write",
    "then",
    "skip",
];

fn parse_directives(comment: &str) -> Vec<(String, String)> {
    let directives: Vec<(String, String)> = comment
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once(':') {
            Some((key, value)) => (key.trim().to_owned(), value.trim().to_owned()),
            None => (part.to_owned(), String::new()),
        })
        .collect();
    // A directive the runner does not know (or a reason cut at a `;`)
    // would be ignored silently.
    for (key, _) in &directives {
        assert!(
            DIRECTIVES.contains(&key.as_str()),
            "unknown README directive `{key}` in `<!-- e2e:{comment}-->`; known: {DIRECTIVES:?}"
        );
    }
    directives
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut pending: Option<Vec<(String, String)>> = None;
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(comment) = trimmed
            .strip_prefix("<!-- e2e:")
            .and_then(|rest| rest.trim_end().strip_suffix("-->"))
        {
            pending = Some(parse_directives(comment));
            continue;
        }
        let Some(lang) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                pending = None;
            }
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut body = String::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            body.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
            body.push('\n');
        }
        found.push(Block {
            line: index + 1,
            lang: lang.trim().to_owned(),
            body,
            directives: pending.take().unwrap_or_default(),
        });
    }
    found
}

/// Runs a script under bash at the repository root; `(exit code, output)`.
fn run_shell(script: &str, envs: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", vigil_e2e::build_dir())
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn check_outcome(block: &Block, code: i32, output: &str, what: &str) {
    for line in output.lines() {
        println!("  > {line}");
    }
    let want: i32 = block
        .directive("exit")
        .map(|code| code.parse().expect("exit: takes a number"))
        .unwrap_or(0);
    assert_eq!(
        code,
        want,
        "{} {what}: exit {code}, expected {want}; output:\n{output}",
        block.place()
    );
    if let Some(expected) = block.directive("expect") {
        assert!(
            output.contains(expected),
            "{} {what}: output lacks `{expected}`:\n{output}",
            block.place()
        );
    }
}

/// The block's lines (indentation and blank lines aside) appear in order,
/// one after another, in the file: a README excerpt that drifts from the
/// shipped file is caught.
fn check_excerpt(block: &Block, path: &str) {
    let file = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("{}: excerpt-of {path}: {e}", block.place()));
    let normalise = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|line| !line.is_empty())
            .collect()
    };
    let haystack = normalise(&file);
    let needle = normalise(&block.body);
    assert!(!needle.is_empty(), "{}: empty excerpt", block.place());
    let found = haystack
        .windows(needle.len())
        .any(|window| window == needle.as_slice());
    assert!(
        found,
        "{}: these lines are not, in this order, in {path}:\n{}",
        block.place(),
        needle.join("\n")
    );
}

/// What is serving while the blocks run: the README's own server (its block
/// text, so it can be started again) and the process.
#[derive(Default)]
struct Serving {
    script: Option<String>,
    process: Option<Background>,
}

impl Serving {
    fn start(&mut self, script: &str, envs: &[(&str, &str)]) {
        self.stop();
        self.process = Some(Background::start(
            script,
            envs,
            "listening on",
            Duration::from_secs(900),
        ));
    }

    fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }

    /// Puts the README's own server back after a harness-made one.
    fn restore(&mut self) {
        match self.script.clone() {
            Some(script) => self.start(&script, &[]),
            None => self.stop(),
        }
    }
}

/// A Python snippet talks to vigil over TCP and a Unix socket, in trusted
/// and jwt mode: the README promises all four work as shown.
fn run_python_variants(block: &Block, serving: &mut Serving) {
    let scratch = vigil_e2e::scratch_dir();
    let script = scratch.join(format!("readme-{}.py", block.line));
    std::fs::write(&script, &block.body).expect("script written");
    let script = script.to_string_lossy().into_owned();
    let socket = "vigil-data/readme-python.sock";
    let listen = format!("vigil serve --listen 127.0.0.1:50051 --listen unix:{socket}");

    let token_subject = "alice";
    for auth in ["trusted", "jwt"] {
        serving.start(&format!("exec {listen} --auth {auth}"), &[]);
        let token = if auth == "jwt" {
            let (code, out) = run_shell(&format!("vigil token --subject {token_subject}"), &[]);
            assert_eq!(code, 0, "vigil token: {out}");
            out.trim().to_owned()
        } else {
            String::new()
        };
        for addr in ["127.0.0.1:50051".to_owned(), format!("unix:{socket}")] {
            let mut envs = vec![("VIGIL_ADDR", addr.as_str())];
            if auth == "jwt" {
                envs.push(("VIGIL_TOKEN", token.as_str()));
            }
            let (code, output) = run_shell(&format!("python - < {script}"), &envs);
            check_outcome(block, code, &output, &format!("[{auth} via {addr}]"));
        }
    }
    serving.restore();
}

#[test]
fn every_readme_snippet_runs_as_written() {
    require_prepared();
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    // A fresh start, as on a new machine: the README's paths are relative
    // to the repository and its first server creates vigil-data/.
    let _ = std::fs::remove_dir_all(root.join("vigil-data"));

    let mut serving = Serving::default();
    let mut ran = 0;
    for block in blocks(&readme) {
        println!("--- {}", block.place());
        if let Some(reason) = block.directive("skip") {
            println!("  not run: {reason}");
            continue;
        }
        if let Some(path) = block.directive("excerpt-of") {
            check_excerpt(&block, path);
        } else if block.directive("serve").is_some() {
            serving.script = Some(block.body.clone());
            serving.start(&block.body, &[]);
        } else if let Some(path) = block.directive("write") {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("directory for a written block");
            }
            std::fs::write(&target, &block.body).expect("block written");
            let command = block
                .directive("then")
                .unwrap_or_else(|| panic!("{}: write: needs then:", block.place()));
            let (code, output) = run_shell(command, &[]);
            check_outcome(&block, code, &output, command);
        } else {
            match block.lang.as_str() {
                "sh" | "bash" => {
                    let (code, output) = run_shell(&block.body, &[]);
                    check_outcome(&block, code, &output, "");
                }
                "python" => run_python_variants(&block, &mut serving),
                other => panic!(
                    "{}: a `{other}` block needs a directive (excerpt-of, write/then or skip)",
                    block.place()
                ),
            }
        }
        ran += 1;
    }
    serving.stop();
    assert!(
        ran > 10,
        "only {ran} README blocks ran; is the parser right?"
    );
    assert!(Path::new(&root.join("vigil-data/audit")).is_dir());
    println!("{ran} README blocks ran");
}
