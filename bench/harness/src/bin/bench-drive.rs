//! The load driver of `bench/gateway-http`: `tools/call` round trips over
//! HTTP against a fast MCP server directly and through `warden serve`, with
//! a loopback no-op round trip as the floor, all in the same run.
//!
//! For each client count C and each round, three paths are measured one
//! after the other: the floor (`POST` to the upstream's `/noop`), the
//! upstream's `/mcp` directly, and the same server through Warden. A path
//! opens C sessions (each its own HTTP connection; `initialize`,
//! `notifications/initialized` and `tools/list` for the MCP paths), warms
//! each up, then releases them together; each session makes its share of
//! the measured calls one after the other. A round trip is timed from
//! sending the request to having read the whole answer, and every answer
//! is checked afterwards: one failure stops the run.
//!
//! Each figure printed is the median over the rounds of that round's
//! value; the added latency is Warden's percentile minus the direct one in
//! the same round (a difference of percentiles, not a percentile of
//! differences).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use warden_bench::{median, Summary};

/// The protocol version the sessions ask for.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// The text each call sends to `echo` (and gets back): 128 bytes.
const TEXT: &str = "warden benchmark payload: the quick brown fox jumps over the lazy dog, \
                    then does it again, and once more for luck ....";
/// How long any one request may take before the run is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "bench-drive",
    about = "Measures tools/call round trips with and without Warden"
)]
struct Args {
    /// The upstream's MCP endpoint (`http://127.0.0.1:PORT/mcp`).
    #[arg(long)]
    direct: String,
    /// The same server through Warden (`http://127.0.0.1:PORT/mcp/NAME`).
    #[arg(long)]
    gateway: String,
    /// The no-op endpoint of the floor (`http://127.0.0.1:PORT/noop`).
    #[arg(long)]
    floor: String,
    /// The API key for Warden.
    #[arg(long, env = "WARDEN_BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Client counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16],
          value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: Vec<u64>,
    /// Measured round trips per path and round, shared out over the clients.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    calls: u64,
    /// Unmeasured round trips per session before the measured ones.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    warmup: u64,
    /// Rounds; every figure is the median over them.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
    rounds: u64,
}

/// Where the round trips go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Floor,
    Direct,
    Warden,
}

impl Path {
    const ALL: [Path; 3] = [Path::Floor, Path::Direct, Path::Warden];

    fn label(self) -> &'static str {
        match self {
            Path::Floor => "loopback no-op (S0)",
            Path::Direct => "direct",
            Path::Warden => "through warden",
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-drive: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for &clients in &args.clients {
        let clients = clients as usize;
        let mut rounds = Vec::new();
        for round in 1..=args.rounds {
            let mut summaries = Vec::new();
            for path in Path::ALL {
                let summary = measure(&args, path, clients)
                    .await
                    .with_context(|| format!("{} with {clients} clients", path.label()))?;
                eprintln!(
                    "round {round}/{}  clients {clients:>2}  {:<20} p50 {:>8.1} µs  p99 {:>8.1} µs  {:>8.0}/s",
                    args.rounds,
                    path.label(),
                    summary.p50_us,
                    summary.p99_us,
                    summary.per_sec
                );
                summaries.push(summary);
            }
            rounds.push(summaries);
        }
        results.push((clients, rounds));
    }
    print_report(&args, &results);
    Ok(())
}

// === one path ===

/// Opens `clients` sessions on `path`, warms them up, then times the
/// measured calls of all of them together.
async fn measure(args: &Args, path: Path, clients: usize) -> anyhow::Result<Summary> {
    let per_session = (args.calls as usize).div_ceil(clients);
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut session = Session::open(args, path).await?;
        for _ in 0..args.warmup {
            session.call().await?;
        }
        sessions.push(session);
    }

    let start = Arc::new(Barrier::new(clients + 1));
    let mut running = tokio::task::JoinSet::new();
    for mut session in sessions {
        let start = Arc::clone(&start);
        running.spawn(async move {
            let mut latencies = Vec::with_capacity(per_session);
            start.wait().await;
            for _ in 0..per_session {
                latencies.push(session.call().await?);
            }
            anyhow::Ok((session, latencies))
        });
    }
    start.wait().await;
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(per_session * clients);
    let mut finished = Vec::with_capacity(clients);
    while let Some(done) = running.join_next().await {
        let (session, measured) = done.context("a client task failed")??;
        latencies.extend(measured);
        finished.push(session);
    }
    let wall = began.elapsed().as_secs_f64();
    for session in finished {
        session.close().await;
    }
    Summary::of(&mut latencies, wall).ok_or_else(|| anyhow!("no round trips were measured"))
}

/// One client: an HTTP connection of its own and, on the MCP paths, an MCP
/// session.
struct Session {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    path: Path,
    next_id: u64,
}

impl Session {
    async fn open(args: &Args, path: Path) -> anyhow::Result<Session> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let url = match path {
            Path::Floor => args.floor.clone(),
            Path::Direct => args.direct.clone(),
            Path::Warden => {
                let bearer = HeaderValue::from_str(&format!("Bearer {}", args.key))
                    .map_err(|_| anyhow!("the API key is not a valid header value"))?;
                headers.insert(AUTHORIZATION, bearer);
                args.gateway.clone()
            }
        };
        let mut session = Session {
            client,
            url,
            headers,
            path,
            next_id: 1,
        };
        if path != Path::Floor {
            session.handshake().await?;
        }
        Ok(session)
    }

    /// `initialize`, `notifications/initialized`, then `tools/list`, which
    /// must offer `echo`.
    async fn handshake(&mut self) -> anyhow::Result<()> {
        let initialize = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "bench-drive", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let response = self.post(initialize.to_string()).await?;
        let session_id = response.headers().get("mcp-session-id").cloned();
        let (status, body) = (response.status(), response.text().await?);
        let answer = result_of(status, &body).context("initialize")?;
        let version = answer
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(PROTOCOL_VERSION);
        let version = HeaderValue::from_str(version)
            .map_err(|_| anyhow!("the protocol version is not a valid header value"))?;
        let session_id = session_id.ok_or_else(|| anyhow!("initialize: no session id"))?;
        self.headers.insert("mcp-session-id", session_id);
        self.headers.insert("mcp-protocol-version", version);

        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let status = self.post(initialized.to_string()).await?.status();
        if status != StatusCode::ACCEPTED {
            bail!("notifications/initialized: HTTP {status}");
        }
        let list = json!({ "jsonrpc": "2.0", "id": 0, "method": "tools/list" });
        let response = self.post(list.to_string()).await?;
        let (status, body) = (response.status(), response.text().await?);
        let tools = result_of(status, &body).context("tools/list")?;
        let offers_echo = tools
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| tools.iter().any(|t| t.get("name") == Some(&json!("echo"))));
        if !offers_echo {
            bail!("tools/list: no `echo` tool in {body}");
        }
        Ok(())
    }

    /// One timed round trip: the time to send the call and read its whole
    /// answer, which is checked once the clock has stopped.
    async fn call(&mut self) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{TEXT}"}}}}}}"#
        );
        let sent = Instant::now();
        let response = self.post(body).await?;
        let status = response.status();
        let answer = response.bytes().await.context("reading an answer")?;
        let took = sent.elapsed();

        if self.path == Path::Floor {
            if status != StatusCode::OK {
                bail!("no-op: HTTP {status}");
            }
        } else {
            let text = std::str::from_utf8(&answer).context("an answer is not UTF-8")?;
            let result = result_of(status, text).context("tools/call")?;
            if result.get("isError") == Some(&Value::Bool(true)) {
                bail!("tools/call: the tool reported an error: {text}");
            }
        }
        Ok(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX))
    }

    async fn post(&self, body: String) -> anyhow::Result<reqwest::Response> {
        self.client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))
    }

    /// Ends the MCP session (`DELETE`); a failure only leaves it to expire.
    async fn close(self) {
        if self.path != Path::Floor {
            let _ = self
                .client
                .delete(&self.url)
                .headers(self.headers.clone())
                .send()
                .await;
        }
    }
}

/// The `result` of a JSON-RPC answer in a 200 JSON body.
fn result_of(status: StatusCode, body: &str) -> anyhow::Result<Value> {
    if status != StatusCode::OK {
        bail!("HTTP {status}: {body}");
    }
    let mut answer: Value = serde_json::from_str(body).context("the answer is not JSON")?;
    match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => bail!("not a result: {body}"),
    }
}

// === the report ===

fn print_report(args: &Args, results: &[(usize, Vec<Vec<Summary>>)]) {
    println!(
        "\ntools/call over loopback HTTP: {} rounds, {} measured calls per path and round, \
         {} warm-up calls per session",
        args.rounds, args.calls, args.warmup
    );
    println!("every figure is the median over the rounds; latencies in µs\n");
    println!(
        "{:>7}  {:<20} {:>9} {:>9} {:>9} {:>10}",
        "clients", "path", "p50", "p99", "p99.9", "calls/s"
    );
    for (clients, rounds) in results {
        for (index, path) in Path::ALL.iter().enumerate() {
            let of = |f: fn(&Summary) -> f64| {
                let values: Vec<f64> = rounds.iter().filter_map(|r| r.get(index)).map(f).collect();
                median(&values).unwrap_or(f64::NAN)
            };
            println!(
                "{clients:>7}  {:<20} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
                path.label(),
                of(|s| s.p50_us),
                of(|s| s.p99_us),
                of(|s| s.p999_us),
                of(|s| s.per_sec),
            );
        }
    }

    println!(
        "\n{:>7}  {:>10} {:>10} {:>14} {:>16}   target: added p50 ≤ 2× S0 p50, added p99 < 1000 µs",
        "clients", "added p50", "added p99", "added p50/S0", "calls/s w/direct"
    );
    for (clients, rounds) in results {
        let of = |f: &dyn Fn(&Summary, &Summary, &Summary) -> f64| {
            let values: Vec<f64> = rounds
                .iter()
                .filter_map(|r| match r.as_slice() {
                    [floor, direct, warden] => Some(f(floor, direct, warden)),
                    _ => None,
                })
                .collect();
            median(&values).unwrap_or(f64::NAN)
        };
        let added_p50 = of(&|_, d, w| w.p50_us - d.p50_us);
        let added_p99 = of(&|_, d, w| w.p99_us - d.p99_us);
        let to_floor = of(&|f, d, w| (w.p50_us - d.p50_us) / f.p50_us);
        let throughput = of(&|_, d, w| w.per_sec / d.per_sec);
        let verdict = |met: bool| if met { "met" } else { "missed" };
        println!(
            "{clients:>7}  {added_p50:>10.1} {added_p99:>10.1} {:>13.1}× {throughput:>16.2}   p50 {}, p99 {}",
            to_floor,
            verdict(to_floor <= 2.0),
            verdict(added_p99 < 1000.0),
        );
    }
}
