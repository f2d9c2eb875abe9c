//! What the CLI tests share: running the `ferry` binary, reading its JSON, and server commands
//! started on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_HOME").env_remove("FERRY_TLS_CA");
    c
}

pub fn ferry(home: &Path) -> Command {
    let mut c = bin();
    c.arg("--home").arg(home);
    c
}

pub fn json(c: &mut Command) -> Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn fails(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8(out.stderr).unwrap();
    // One line naming the cause, and at most a second one saying what to do.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")),
        "one line, or one and a hint: {err}"
    );
    err
}

pub struct Node {
    pub child: Child,
    pub url: String,
}

/// Starts a server command and returns it with the address of its first line,
/// `listening on HOST:PORT`.
pub fn spawn_listening(args: &[&str], path: &Path) -> (Child, String) {
    spawn_server(
        args.iter()
            .map(std::ffi::OsStr::new)
            .chain([path.as_os_str()]),
    )
}

/// Starts `ferry ARGS` (a server) and returns it with the address of its first line.
pub fn spawn_server<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> (Child, String) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    (child, addr)
}

/// Waits for a child stopped with SIGTERM and checks it exited cleanly.
pub fn exits_cleanly(child: &mut Child, what: &str) {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} exits cleanly on SIGTERM");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{what} did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Node {
    pub fn start(db: &Path) -> Node {
        let (child, addr) = spawn_listening(&["node", "--listen", "127.0.0.1:0", "--db"], db);
        Node {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub fn stop(mut self) {
        unsafe_kill(self.child.id(), 15);
        exits_cleanly(&mut self.child, "the node");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

pub fn texts(home: &Path, conversation: &str) -> Vec<String> {
    json(ferry(home).args(["messages", "list", "--conversation", conversation, "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "application")
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// `ferry group create` with these inboxes; the new group's id.
pub fn create_group(home: &Path, inbox_ids: &[&str]) -> String {
    let created = json(
        ferry(home)
            .args(["group", "create"])
            .args(inbox_ids)
            .arg("--json"),
    );
    created["id"].as_str().unwrap().to_string()
}

pub fn init(home: &Path, node: &Node, account_key: Option<&PathBuf>) -> Value {
    let mut c = ferry(home);
    c.args(["init", "--node", &node.url, "--json"]);
    if let Some(k) = account_key {
        c.arg("--account-key").arg(k);
    }
    json(&mut c)
}

/// `ferry run` on a folder, with its output lines read as they come (its log goes to
/// `run.log` in the folder, shown when a test fails).
pub struct Run {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: PathBuf,
}

impl Run {
    pub fn start(home: &Path) -> Run {
        std::fs::create_dir_all(home).unwrap();
        let log = home.join("run.log");
        let mut child = ferry(home)
            .args(["run", "--check-every-secs", "3600"])
            .env("FERRY_LOG", "info,refinery_core=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let run = Run { child, lines, log };
        assert!(run.wait_for(|l| l.starts_with("running in")).is_some());
        run
    }

    /// The first line (from now) that `want` accepts, within 20 s.
    pub fn wait_for(&self, want: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_within(Duration::from_secs(20), want)
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first line (from now) that `want` accepts, within `limit`.
    pub fn wait_within(&self, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if want(&line) {
                    return Some(line);
                }
            }
        }
        None
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry history-server` on loopback, with its folder and base URL.
pub struct HistoryServer {
    pub child: Child,
    pub url: String,
}

impl HistoryServer {
    pub fn start(dir: &Path) -> HistoryServer {
        let (child, addr) =
            spawn_listening(&["history-server", "--listen", "127.0.0.1:0", "--dir"], dir);
        HistoryServer {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for HistoryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many files a folder holds (the history server's payloads).
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        .unwrap_or(0)
}
