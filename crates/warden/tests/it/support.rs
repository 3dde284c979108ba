//! Shared test support: where the peers are, a raw line-level MCP client
//! that drives `warden proxy` over stdio, and decision-log readers.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// The folder the test peers were installed in.
pub fn peers() -> PathBuf {
    let dir = std::env::var_os("WARDEN_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.peers"));
    assert!(
        dir.join("npm/node_modules/.bin/mcp-server-everything")
            .exists()
            && dir.join("py/bin/python").exists(),
        "test peers are not installed in `{}`: run `scripts/install-peers` (or `scripts/test`)",
        dir.display()
    );
    dir
}

pub fn npm_bin(name: &str) -> String {
    peers()
        .join("npm/node_modules/.bin")
        .join(name)
        .display()
        .to_string()
}

pub fn python() -> String {
    peers().join("py/bin/python").display().to_string()
}

pub fn peer_script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(name)
        .display()
        .to_string()
}

/// A temporary working folder with a policy directory and a store.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(policies: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/test.cedar"), policies).unwrap();
        Workspace { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn policies(&self) -> String {
        self.path("policies").display().to_string()
    }

    pub fn store(&self) -> String {
        self.path("decisions.db").display().to_string()
    }

    /// The arguments of `warden proxy` before `--`.
    pub fn proxy_args(&self, agent: &str) -> Vec<String> {
        vec![
            "proxy".into(),
            "--policies".into(),
            self.policies(),
            "--agent".into(),
            agent.into(),
            "--store".into(),
            self.store(),
            "--server-name".into(),
            "srv".into(),
        ]
    }

    /// Every decision record, oldest first, via `warden audit tail`.
    pub fn records(&self) -> Vec<Value> {
        let out = Command::new(WARDEN)
            .args([
                "audit",
                "tail",
                "--format",
                "json",
                "-n",
                "100000",
                "--store",
                &self.store(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `warden proxy` with a raw line-level client on its stdio.
pub struct Proxy {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Receiver<String>,
    pub seen: Vec<Value>,
    /// The proxy closed its stdout.
    pub closed: bool,
}

impl Proxy {
    pub fn start(ws: &Workspace, agent: &str, upstream: &[String]) -> Proxy {
        Self::start_with(ws, ws.proxy_args(agent), upstream)
    }

    pub fn start_with(_ws: &Workspace, args: Vec<String>, upstream: &[String]) -> Proxy {
        let mut child = Command::new(WARDEN)
            .args(&args)
            .arg("--")
            .args(upstream)
            .env("WARDEN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = pipe_lines(child.stdout.take().unwrap());
        let stderr = pipe_lines(child.stderr.take().unwrap());
        Proxy {
            child,
            stdin,
            lines,
            stderr,
            seen: Vec::new(),
            closed: false,
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send_json(&mut self, value: Value) {
        self.send(&value.to_string());
    }

    /// The next line the proxy writes, as JSON; every stdout line must be
    /// JSON-RPC.
    pub fn next(&mut self, timeout: Duration) -> Option<Value> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.closed = true;
                thread::sleep(timeout.min(Duration::from_millis(50)));
                return None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
        };
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("proxy stdout carried a non-JSON line {line:?}: {e}"));
        assert_eq!(value["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        self.seen.push(value.clone());
        Some(value)
    }

    /// The next response (skipping the upstream's notifications and
    /// requests).
    pub fn next_response(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.next(Duration::from_millis(100)) {
                if v.get("method").is_none() {
                    self.seen.pop();
                    return Some(v);
                }
            }
        }
        None
    }

    /// Waits for the response whose raw id token is `id` (as JSON text).
    pub fn response(&mut self, id: &str) -> Value {
        if let Some(found) = self.take_seen(id) {
            return found;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(v) = self.next(Duration::from_millis(200)) {
                if is_response_to(&v, id) {
                    self.seen.pop();
                    return v;
                }
            }
        }
        panic!(
            "no response with id {id} within 30 s; seen: {:#?}",
            self.seen
        );
    }

    fn take_seen(&mut self, id: &str) -> Option<Value> {
        let index = self.seen.iter().position(|v| is_response_to(v, id))?;
        Some(self.seen.remove(index))
    }

    /// Sends a request and waits for its response.
    pub fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send_json(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(&id.to_string())
    }

    pub fn handshake(&mut self, version: &str) -> Value {
        let init = self.request(
            json!(0),
            "initialize",
            json!({"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "warden-tests", "version": "0"}}),
        );
        self.send_json(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        init
    }

    /// Closes stdin, as a client that has sent all it will; answers can
    /// still be read.
    pub fn close_input(&mut self) {
        drop(self.stdin.take());
    }

    /// Closes stdin and waits for exit; returns (exit code, stderr).
    pub fn finish(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        let mut err = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            err.push_str(&line);
            err.push('\n');
        }
        (status, err)
    }

    /// Waits for the proxy to exit by itself; returns (exit code, stderr).
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let status = wait_with_timeout(&mut self.child, timeout);
        let mut err = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            err.push_str(&line);
            err.push('\n');
        }
        (status, err)
    }
}

impl Drop for Proxy {
    /// A test that fails half-way still stops everything it started: SIGTERM
    /// lets warden stop its upstream; SIGKILL follows if it does not exit.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_response_to(v: &Value, id: &str) -> bool {
    v.get("method").is_none() && v.get("id").map(Value::to_string).as_deref() == Some(id)
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the proxy did not exit within {timeout:?}");
}

fn pipe_lines(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs the Python SDK test client against `warden proxy`; returns its JSON
/// document.
pub fn sdk_client(ops: &[&str], mode: &str, proxy_cmd: &[String]) -> Value {
    let out = Command::new(python())
        .arg(peer_script("sdk_client.py"))
        .args(["--mode", mode, "--timeout", "90"])
        .args(ops)
        .arg("--")
        .args(proxy_cmd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sdk client failed ({:?}): {}\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("sdk client output {stdout:?}: {e}"))
}

/// The full `warden proxy ... -- upstream` command line.
pub fn proxy_command(ws: &Workspace, agent: &str, upstream: &[String]) -> Vec<String> {
    let mut cmd = vec![WARDEN.to_owned()];
    cmd.extend(ws.proxy_args(agent));
    cmd.push("--".into());
    cmd.extend(upstream.iter().cloned());
    cmd
}

/// The upstream command of the scripted fault-injection server.
pub fn fake_upstream(flags: &[&str]) -> Vec<String> {
    let mut cmd = vec![python(), peer_script("fake_upstream.py")];
    cmd.extend(flags.iter().map(|s| s.to_string()));
    cmd
}

/// A tap in front of `upstream` logging every line the upstream receives.
pub fn tapped(log: &Path, upstream: Vec<String>) -> Vec<String> {
    let mut cmd = vec![
        python(),
        peer_script("tap.py"),
        log.display().to_string(),
        "--".into(),
    ];
    cmd.extend(upstream);
    cmd
}

/// The lines the upstream received, from a tap or fake-upstream log.
pub fn upstream_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Records of `kind` ("decision" or "outcome").
pub fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// Runs `warden ARGS` to completion, without colour.
pub fn warden(args: &[&str]) -> std::process::Output {
    Command::new(WARDEN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A finished command's stdout and stderr, as text.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
