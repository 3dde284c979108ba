//! Support for the gateway tests: `warden serve` on a free loopback port,
//! upstream servers over HTTP, a plain HTTP client speaking MCP's Streamable
//! HTTP, and JWTs signed for the tests.
//!
//! Every process started here is stopped when its guard is dropped, so a
//! test that fails half-way leaves nothing running.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::HeaderMap;
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

use crate::support::*;

/// How long a process may take to come up, or an answer to arrive.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often a port is picked again when another process took it first.
const PORT_ATTEMPTS: usize = 5;

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A string as a TOML basic string (JSON's escapes are TOML's).
pub fn toml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Guard {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Guard {
    fn spawn(command: &mut Command) -> Guard {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Guard { child, stderr }
    }

    /// What the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !self.has_exited() {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === warden serve ===

/// `warden serve` on a loopback port of its own.
pub struct Served {
    _process: Guard,
    /// The port it listens on.
    pub port: u16,
}

impl Served {
    /// Writes `warden.toml` into the workspace (policies, store and the
    /// listener, then `body`, in which `{PORT}` stands for the port) and
    /// serves it; waits until `/healthz` answers.
    pub fn start(ws: &Workspace, body: &str) -> Served {
        let config = ws.path("warden.toml");
        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            std::fs::write(&config, config_text(port, body)).unwrap();
            let mut process = Guard::spawn(
                Command::new(WARDEN)
                    .args(["serve", "--config"])
                    .arg(&config)
                    .env("WARDEN_LOG", "info")
                    .env("NO_COLOR", "1")
                    .stdout(Stdio::null()),
            );
            if wait_healthy(&mut process, port) {
                return Served {
                    _process: process,
                    port,
                };
            }
            failures.push_str(&process.stderr());
            if !failures.contains("cannot listen") {
                break;
            }
        }
        panic!("`warden serve` did not come up:\n{failures}");
    }

    /// A URL of the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The MCP endpoint of `server`.
    pub fn mcp(&self, server: &str) -> String {
        self.url(&format!("/mcp/{server}"))
    }

    /// What `/readyz` says now.
    pub fn ready(&self) -> Value {
        http()
            .get(self.url("/readyz"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn config_text(port: u16, body: &str) -> String {
    let body = body.replace("{PORT}", &port.to_string());
    format!(
        "policies = \"policies\"\nstore = \"decisions.db\"\n\n\
         [gateway]\nlisten = \"127.0.0.1:{port}\"\n{body}"
    )
}

fn wait_healthy(process: &mut Guard, port: u16) -> bool {
    let client = http();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if process.has_exited() {
            // Let the stderr reader catch up with the last lines.
            thread::sleep(Duration::from_millis(200));
            return false;
        }
        if client.get(&url).send().is_ok_and(|r| r.status() == 200) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Mints an API key with `warden keys create`.
pub fn mint_key(ws: &Workspace, agent: &str, acting_for: Option<&str>) -> String {
    let mut command = Command::new(WARDEN);
    command.args(["keys", "create", "--store", &ws.store(), "--agent", agent]);
    if let Some(human) = acting_for {
        command.args(["--acting-for", human]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("wdn_"), "{key}");
    key
}

/// A `[servers.NAME]` table running the scripted upstream over stdio.
pub fn fake_stdio_server(name: &str, flags: &[&str]) -> String {
    let args: Vec<String> = std::iter::once(peer_script("fake_upstream.py"))
        .chain(flags.iter().map(|f| (*f).to_owned()))
        .map(|a| toml_str(&a))
        .collect();
    format!(
        "[servers.{name}]\ncommand = {}\nargs = [{}]\n",
        toml_str(&python()),
        args.join(", ")
    )
}

// === upstream servers over HTTP ===

/// An upstream MCP server over Streamable HTTP, stopped when dropped.
pub struct HttpPeer {
    _process: Guard,
    /// Its MCP endpoint.
    pub url: String,
}

impl HttpPeer {
    /// The official server-everything, speaking Streamable HTTP on
    /// loopback.
    pub fn everything() -> HttpPeer {
        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match HttpPeer::everything_at(free_port()) {
                Ok(peer) => return peer,
                Err(stderr) => failures.push_str(&stderr),
            }
        }
        panic!("server-everything did not come up:\n{failures}");
    }

    /// server-everything on `port`; its stderr if it did not come up.
    pub fn everything_at(port: u16) -> Result<HttpPeer, String> {
        {
            let mut process = Guard::spawn(
                Command::new(npm_bin("mcp-server-everything"))
                    .arg("streamableHttp")
                    .env("PORT", port.to_string())
                    .env(
                        "NODE_OPTIONS",
                        format!("--require {}", peer_script("loopback.cjs")),
                    )
                    .stdout(Stdio::null()),
            );
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline && !process.has_exited() {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(HttpPeer {
                        _process: process,
                        url: format!("http://127.0.0.1:{port}/mcp"),
                    });
                }
                thread::sleep(Duration::from_millis(100));
            }
            Err(process.stderr())
        }
    }

    /// The scripted upstream in its Streamable HTTP mode (`--http`).
    pub fn fake(flags: &[&str]) -> HttpPeer {
        let mut command = Command::new(python());
        command
            .arg(peer_script("fake_upstream.py"))
            .arg("--http")
            .args(flags)
            .stdout(Stdio::piped());
        let mut process = Guard::spawn(&mut command);
        let stdout = process.child.stdout.take().unwrap();
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let url = first.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the fake upstream did not start: {url:?} {}",
            process.stderr()
        );
        HttpPeer {
            _process: process,
            url,
        }
    }
}

/// The HTTP requests the fake upstream received, from its `--log`.
pub fn http_log(log: &Path) -> Vec<Value> {
    upstream_lines(log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `found` holds for the lines of `log`.
pub fn wait_for_log(log: &Path, what: &str, found: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if found(&upstream_lines(log)) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the upstream never received {what}: {:#?}",
        upstream_lines(log)
    );
}

// === a Streamable HTTP client ===

/// A blocking HTTP client that follows no redirects.
pub fn http() -> Client {
    Client::builder()
        .timeout(PATIENCE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A finished HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    fn read(response: Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }

    /// A header's value, if there is one that is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC error code of the body.
    pub fn error_code(&self) -> i64 {
        let body = self.json();
        body["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {body}"))
    }
}

/// One client of one MCP endpoint of the gateway.
pub struct McpClient {
    http: Client,
    url: String,
    bearer: Option<String>,
    /// The session id the gateway gave, once initialized.
    pub session: Option<String>,
}

impl McpClient {
    pub fn new(url: &str, bearer: Option<&str>) -> McpClient {
        McpClient {
            http: http(),
            url: url.to_owned(),
            bearer: bearer.map(str::to_owned),
            session: None,
        }
    }

    /// This client presenting another client's session id.
    pub fn with_session(&self, session: &str) -> McpClient {
        let mut other = McpClient::new(&self.url, self.bearer.as_deref());
        other.session = Some(session.to_owned());
        other
    }

    /// This client, with its session, at another endpoint.
    pub fn at(&self, url: &str) -> McpClient {
        let mut other = McpClient::new(url, self.bearer.as_deref());
        other.session = self.session.clone();
        other
    }

    fn prepare(&self, builder: RequestBuilder) -> RequestBuilder {
        let mut builder = builder;
        if let Some(bearer) = &self.bearer {
            builder = builder.header("authorization", format!("Bearer {bearer}"));
        }
        if let Some(session) = &self.session {
            builder = builder.header("mcp-session-id", session);
        }
        builder
    }

    /// A POST of `body` as JSON, answered as one JSON body; `headers` are
    /// added (and may replace the content type).
    pub fn post_raw(&self, body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> Reply {
        let mut builder = self.prepare(self.http.post(&self.url));
        for (name, value) in [
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ] {
            if !headers
                .iter()
                .any(|(given, _)| given.eq_ignore_ascii_case(name))
            {
                builder = builder.header(name, value);
            }
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Reply::read(builder.body(body.into()).send().unwrap())
    }

    /// A POST of one message.
    pub fn post(&self, message: &Value) -> Reply {
        self.post_raw(message.to_string(), &[])
    }

    /// A request answered with 200; returns the JSON-RPC response.
    pub fn request(&self, id: Value, method: &str, params: Value) -> Value {
        let reply =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        assert_eq!(reply.status, 200, "{method}: {reply:?}");
        let response = reply.json();
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// A `tools/call`, answered with 200.
    pub fn call(&self, id: i64, tool: &str, arguments: Value) -> Value {
        self.request(
            json!(id),
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }

    /// `initialize` (at `version`) and `notifications/initialized`; keeps
    /// the session id and returns the `initialize` result.
    pub fn initialize_at(&mut self, version: &str) -> Value {
        let reply = self.post(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {"roots": {}},
                       "clientInfo": {"name": "warden-gateway-tests", "version": "0"}}
        }));
        assert_eq!(reply.status, 200, "initialize: {reply:?}");
        let session = reply
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("no session id: {reply:?}"));
        self.session = Some(session.to_owned());
        let result = reply.json()["result"].clone();
        let initialized =
            self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(initialized.status, 202, "{initialized:?}");
        result
    }

    pub fn initialize(&mut self) -> Value {
        self.initialize_at("2025-06-18")
    }

    /// A POST of `message` that accepts an event stream as its answer.
    fn post_streaming(&self, message: &Value) -> Response {
        self.prepare(self.http.post(&self.url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string())
            .send()
            .unwrap()
    }

    /// A POST of a request whose answer comes as an event stream.
    pub fn stream(&self, message: &Value) -> Events {
        let response = self.post_streaming(message);
        assert_eq!(response.status(), 200, "{message}");
        Events::new(response)
    }

    /// A POST of a request accepting an event stream: the status and, for
    /// 200, every message the stream carried.
    pub fn stream_status(&self, message: &Value) -> (u16, Vec<Value>) {
        let response = self.post_streaming(message);
        let status = response.status().as_u16();
        if status != 200 {
            return (status, Vec::new());
        }
        let json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if json {
            return (status, vec![response.json().unwrap()]);
        }
        (status, Events::new(response).rest())
    }

    /// A GET of the session's stream of server messages; only its status.
    pub fn get_status(&self) -> u16 {
        self.get_status_accepting("text/event-stream")
    }

    /// A GET of the session's stream, accepting `accept`; only its status.
    pub fn get_status_accepting(&self, accept: &str) -> u16 {
        let response = self
            .prepare(self.http.get(&self.url))
            .header("accept", accept)
            .send()
            .unwrap();
        response.status().as_u16()
    }

    /// A DELETE of the session.
    pub fn delete(&self) -> Reply {
        Reply::read(self.prepare(self.http.delete(&self.url)).send().unwrap())
    }
}

/// The JSON-RPC messages of an event stream, as they arrive.
pub struct Events {
    lines: BufReader<Response>,
}

impl Events {
    fn new(response: Response) -> Events {
        Events {
            lines: BufReader::new(response),
        }
    }

    /// The next message; `None` when the stream ended.
    pub fn next_message(&mut self) -> Option<Value> {
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data).unwrap());
            }
            if let Some(payload) = line.strip_prefix("data:") {
                data.push_str(payload.trim_start());
            }
        }
    }

    /// Every message up to the end of the stream.
    pub fn rest(mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(message) = self.next_message() {
            all.push(message);
        }
        all
    }
}

// === JWTs ===

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://warden.test/mcp";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 signing key made for one test.
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SigningKey {
    pub fn new(kid: &str) -> SigningKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        SigningKey {
            kid: kid.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA",
               "use": "sig", "x": b64(&self.public)})
    }

    /// `claims` signed with EdDSA, naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// `claims` signed with HS256, using `secret` (public key material) as
    /// the shared secret: the algorithm-confusion attack.
    pub fn hs256_with(&self, claims: &Value, secret: &[u8]) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// The raw public key bytes.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }
}

/// A token with `alg: none` and no signature.
pub fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `token` with its claims replaced, the signature kept.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
