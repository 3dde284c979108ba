//! A fast MCP server for benchmarks: Streamable HTTP on loopback, one tool,
//! JSON bodies only.
//!
//! `POST /mcp` answers `initialize` (with an `Mcp-Session-Id`), `ping`,
//! `tools/list` (the one tool `echo`) and `tools/call` of `echo`, each with
//! one JSON body; notifications and responses get 202. `GET /mcp` is 405 (no
//! stream of its own) and `DELETE /mcp` ends nothing and says 200. Session
//! ids are handed out but not checked: the server is there to answer fast,
//! not to be measured. `POST /noop` reads the body and answers `{}` without
//! looking at it: the loopback HTTP floor (S0) the driver compares with.
//!
//! It binds 127.0.0.1 only, prints `listening on 127.0.0.1:PORT` once ready,
//! and stops by itself when its standard input closes or after `--lifetime`
//! seconds, whichever comes first (so started with `</dev/null` it stops at
//! once).

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The protocol versions it agrees to; any other request gets the newest.
const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const NEWEST: &str = "2025-11-25";

#[derive(Debug, Parser)]
#[command(
    name = "bench-upstream",
    about = "A fast loopback MCP server for benchmarks"
)]
struct Args {
    /// The port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seconds after which it stops even if its standard input is open.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    lifetime: u64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-upstream: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    println!("listening on {address}");

    let app = Router::new()
        .route("/mcp", post(message).delete(end_session))
        .route("/noop", post(noop));
    let lifetime = Duration::from_secs(args.lifetime);
    let stop = async move {
        tokio::select! {
            _ = stdin_closed() => {}
            _ = tokio::time::sleep(lifetime) => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("the server stopped with an error")
}

/// Resolves once standard input reaches its end. The read runs on a plain
/// thread: a runtime's blocking pool would keep the process alive at exit.
async fn stdin_closed() {
    let (closed, on_close) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0_u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = closed.send(());
    });
    let _ = on_close.await;
}

async fn noop(_body: Bytes) -> Response {
    Json(json!({})).into_response()
}

async fn end_session() -> StatusCode {
    StatusCode::OK
}

async fn message(body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        let error = error_answer(&Value::Null, -32700, "the body is not JSON");
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    let (Some(id), Some(method)) = (
        message.get("id"),
        message.get("method").and_then(Value::as_str),
    ) else {
        // Notifications and the client's answers: nothing to say back.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").unwrap_or(&Value::Null);
    match method {
        "initialize" => initialize(id, params),
        "ping" => Json(result_answer(id, json!({}))).into_response(),
        "tools/list" => Json(result_answer(id, json!({ "tools": [echo_tool()] }))).into_response(),
        "tools/call" => Json(call(id, params)).into_response(),
        _ => Json(error_answer(id, -32601, "no such method")).into_response(),
    }
}

fn initialize(id: &Value, params: &Value) -> Response {
    static SESSIONS: AtomicU64 = AtomicU64::new(1);
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(NEWEST);
    let result = json!({
        "protocolVersion": version,
        "capabilities": { "tools": {} },
        "serverInfo": { "name": "bench-upstream", "version": env!("CARGO_PKG_VERSION") },
    });
    let mut response = Json(result_answer(id, result)).into_response();
    let session = format!("bench-{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert("mcp-session-id", value);
    }
    response
}

fn call(id: &Value, params: &Value) -> Value {
    if params.get("name").and_then(Value::as_str) != Some("echo") {
        return error_answer(id, -32602, "no such tool");
    }
    let text = params
        .pointer("/arguments/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    result_answer(id, json!({ "content": [{ "type": "text", "text": text }] }))
}

fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "description": "Answers with the text it is given",
        "inputSchema": {
            "type": "object",
            "properties": { "text": { "type": "string" } },
            "required": ["text"],
        },
    })
}

fn result_answer(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error_answer(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}
