//! The stdio proxy: one MCP client on our stdin/stdout, one upstream server
//! as a child process speaking MCP on its stdin/stdout.
//!
//! This module owns processes, pipes and threads; every decision about a
//! message is the relay's. Four threads feed one event loop (client lines,
//! upstream lines, a writer to the upstream, a clock), so the relay itself
//! runs on one thread and needs no locks.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use warden_policy::Pdp;
use warden_store::DecisionLog;

use crate::pins::Pins;
use crate::relay::{Out, Relay, RelayConfig, RelayStats};

/// How often the clock ticks (call timeouts are checked on ticks).
const TICK: Duration = Duration::from_millis(200);
/// How long the upstream may take to exit once the client has gone.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What the proxy runs and how.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The upstream command and its arguments.
    pub command: Vec<OsString>,
    /// Extra environment for the upstream (brokered credentials).
    pub env: Vec<(OsString, OsString)>,
    /// The upstream's working folder; `None` for Warden's own.
    pub cwd: Option<std::path::PathBuf>,
    /// The relay settings.
    pub relay: RelayConfig,
    /// Largest message accepted from either side, in bytes.
    pub max_message_bytes: usize,
    /// Tool pins, when kept.
    pub pins: Option<Pins>,
}

/// Why the proxy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyExit {
    /// The client closed its side; the upstream was stopped.
    ClientClosed(RelayStats),
    /// A termination signal arrived (clients stop stdio servers with
    /// SIGTERM); the upstream was stopped too, so it never outlives us.
    Signalled(RelayStats, i32),
    /// The upstream exited (with this status, when known) while the client
    /// was still connected.
    UpstreamExited(RelayStats, Option<ExitStatus>),
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream command was given.
    #[error("no upstream server command given")]
    NoCommand,
    /// The upstream could not be started.
    #[error("cannot start the upstream server `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a proxy thread")]
    Thread(#[source] io::Error),
}

enum Line {
    Text(String),
    NotUtf8,
    /// A line over the size limit: only its first and last bytes are kept,
    /// enough to find which request an oversized answer belongs to.
    TooLong {
        head: Vec<u8>,
        tail: Vec<u8>,
    },
}

enum Event {
    Client(Line),
    ClientEof,
    Signal(i32),
    Server(Line),
    ServerEof,
    /// Writing to the upstream's stdin failed.
    ServerInputClosed,
    Tick,
}

/// Runs the proxy until the client closes or the upstream exits.
pub fn run_stdio_proxy(
    options: ProxyOptions,
    pdp: Arc<Pdp>,
    log: &mut dyn DecisionLog,
    client_in: impl Read + Send + 'static,
    client_out: &mut dyn Write,
) -> Result<ProxyExit, ProxyError> {
    let mut child = spawn(&options)?;
    let (events, inbox) = mpsc::channel();
    let max = options.max_message_bytes;

    start_reader(
        "warden-client-reader",
        client_in,
        max,
        events.clone(),
        Event::Client,
        Event::ClientEof,
    )?;
    if let Some(stdout) = child.stdout.take() {
        start_reader(
            "warden-upstream-reader",
            stdout,
            max,
            events.clone(),
            Event::Server,
            Event::ServerEof,
        )?;
    }
    let to_server = match child.stdin.take() {
        Some(stdin) => Some(start_writer(stdin, events.clone())?),
        None => None,
    };
    start_signals(events.clone())?;
    start_clock(events)?;

    let mut relay = Relay::new(options.relay.clone(), pdp);
    if let Some(pins) = options.pins.clone() {
        relay = relay.with_pins(pins);
    }
    let pipes = Pipes {
        inbox: &inbox,
        to_server,
        client_out,
    };
    // Past the call timeout, so that every request still in flight has been
    // answered with its timeout error before the proxy gives up on it.
    let drain_for = options.relay.call_timeout + 3 * TICK;
    let outcome = event_loop(&mut relay, &mut child, pipes, log, max, drain_for);
    match outcome {
        LoopEnd::ClientClosed => {
            stop_child(&mut child);
            Ok(ProxyExit::ClientClosed(relay.stats()))
        }
        LoopEnd::Signalled(signal) => {
            stop_child(&mut child);
            Ok(ProxyExit::Signalled(relay.stats(), signal))
        }
        LoopEnd::UpstreamExited => {
            let status = wait_briefly(&mut child);
            Ok(ProxyExit::UpstreamExited(relay.stats(), status))
        }
    }
}

enum LoopEnd {
    ClientClosed,
    Signalled(i32),
    UpstreamExited,
}

/// The loop's view of the pipes: the event inbox and the line sender to the
/// upstream's stdin (gone once the upstream stops reading).
struct Pipes<'a> {
    inbox: &'a Receiver<Event>,
    to_server: Option<Sender<String>>,
    client_out: &'a mut dyn Write,
}

fn event_loop(
    relay: &mut Relay,
    child: &mut Child,
    mut pipes: Pipes<'_>,
    log: &mut dyn DecisionLog,
    max: usize,
    drain_for: Duration,
) -> LoopEnd {
    let mut exited_at: Option<Instant> = None;
    // Once the client closes its side, requests already sent are still
    // answered (a client may write its requests and close at once), for at
    // most the call timeout.
    let mut draining_since: Option<Instant> = None;
    loop {
        let Ok(event) = pipes.inbox.recv() else {
            return LoopEnd::ClientClosed;
        };
        let outputs = match event {
            Event::Client(Line::Text(text)) => relay.on_client(&text, log),
            Event::Client(Line::NotUtf8) => {
                relay.on_client_unreadable("message is not valid UTF-8", log)
            }
            Event::Client(Line::TooLong { .. }) => {
                relay.on_client_unreadable(&format!("message is larger than {max} bytes"), log)
            }
            Event::ClientEof => {
                draining_since = Some(Instant::now());
                Vec::new()
            }
            Event::Signal(signal) => {
                relay.abandon_all(log);
                return LoopEnd::Signalled(signal);
            }
            Event::Server(Line::Text(text)) => relay.on_server(&text, log),
            Event::Server(Line::NotUtf8) => {
                relay.on_server_garbage();
                Vec::new()
            }
            Event::Server(Line::TooLong { head, tail }) => {
                let head = String::from_utf8_lossy(&head);
                let tail = String::from_utf8_lossy(&tail);
                relay.on_server_oversized(&head, &tail, max, log)
            }
            Event::ServerEof | Event::ServerInputClosed => {
                return upstream_gone(relay, &mut pipes, log)
            }
            Event::Tick => {
                // A child that exited while a grandchild keeps its stdout open
                // never sends EOF; give the pipe a moment to drain, then treat
                // the exit as final.
                if exited_at.is_none() && matches!(child.try_wait(), Ok(Some(_))) {
                    exited_at = Some(Instant::now());
                }
                if exited_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1)) {
                    return upstream_gone(relay, &mut pipes, log);
                }
                if draining_since.is_some_and(|since| since.elapsed() > drain_for) {
                    relay.abandon_all(log);
                    return LoopEnd::ClientClosed;
                }
                relay.on_tick(Instant::now(), log)
            }
        };
        match deliver(outputs, &mut pipes) {
            Delivery::Done => {}
            Delivery::ClientGone => {
                relay.abandon_all(log);
                return LoopEnd::ClientClosed;
            }
            Delivery::ServerGone => return upstream_gone(relay, &mut pipes, log),
        }
        if draining_since.is_some() && relay.in_flight() == 0 {
            return LoopEnd::ClientClosed;
        }
    }
}

/// Answers everything in flight once the upstream has stopped reading or
/// writing.
fn upstream_gone(relay: &mut Relay, pipes: &mut Pipes<'_>, log: &mut dyn DecisionLog) -> LoopEnd {
    pipes.to_server = None;
    let outputs = relay.on_server_exit(log);
    let _ = deliver(outputs, pipes);
    LoopEnd::UpstreamExited
}

enum Delivery {
    Done,
    ClientGone,
    ServerGone,
}

/// Sends each output, and says which side, if any, can no longer be
/// written to.
fn deliver(outputs: Vec<Out>, pipes: &mut Pipes<'_>) -> Delivery {
    // INVARIANT: a failure on one side never drops what is owed to the
    // other: every client line is still written when the upstream is gone.
    let mut server_gone = false;
    for output in outputs {
        match output {
            Out::Client(line) => {
                let out = &mut pipes.client_out;
                let written = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if written.is_err() {
                    return Delivery::ClientGone;
                }
            }
            Out::Server(line) => {
                let sent = pipes.to_server.as_ref().map(|s| s.send(line));
                server_gone |= !matches!(sent, Some(Ok(())));
            }
        }
    }
    if server_gone {
        Delivery::ServerGone
    } else {
        Delivery::Done
    }
}

// LIMITATION: a SIGKILLed warden leaves its child running until the child
// notices end of input on its stdin.
fn spawn(options: &ProxyOptions) -> Result<Child, ProxyError> {
    let Some((program, args)) = options.command.split_first() else {
        return Err(ProxyError::NoCommand);
    };
    let mut command = Command::new(program);
    if let Some(dir) = &options.cwd {
        command.current_dir(dir);
    }
    command
        .args(args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| ProxyError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })
}

fn start_reader(
    name: &str,
    input: impl Read + Send + 'static,
    max: usize,
    events: Sender<Event>,
    wrap: fn(Line) -> Event,
    eof: Event,
) -> Result<(), ProxyError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut reader = BufReader::new(input);
            loop {
                match read_line(&mut reader, max) {
                    Ok(Some(line)) => {
                        if events.send(wrap(line)).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        let _ = events.send(eof);
                        return;
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(ProxyError::Thread)
}

fn start_writer(
    mut stdin: ChildStdin,
    events: Sender<Event>,
) -> Result<Sender<String>, ProxyError> {
    let (sender, receiver) = mpsc::channel::<String>();
    thread::Builder::new()
        .name("warden-upstream-writer".to_owned())
        .spawn(move || {
            for line in receiver {
                let written = stdin
                    .write_all(line.as_bytes())
                    .and_then(|()| stdin.write_all(b"\n"))
                    .and_then(|()| stdin.flush());
                if written.is_err() {
                    // The upstream stopped reading: say so now, so requests
                    // in flight are answered at once, not at their timeout.
                    let _ = events.send(Event::ServerInputClosed);
                    return;
                }
            }
            // Dropping stdin closes the upstream's input: its signal to exit.
        })
        .map_err(ProxyError::Thread)?;
    Ok(sender)
}

fn start_signals(events: Sender<Event>) -> Result<(), ProxyError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(ProxyError::Thread)?;
    thread::Builder::new()
        .name("warden-signals".to_owned())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = events.send(Event::Signal(signal));
            }
        })
        .map(|_| ())
        .map_err(ProxyError::Thread)
}

fn start_clock(events: Sender<Event>) -> Result<(), ProxyError> {
    thread::Builder::new()
        .name("warden-clock".to_owned())
        .spawn(move || loop {
            thread::sleep(TICK);
            if events.send(Event::Tick).is_err() {
                return;
            }
        })
        .map(|_| ())
        .map_err(ProxyError::Thread)
}

/// Reads one newline-terminated line of at most `max` bytes. A longer line
/// is consumed to its end and reported as `TooLong`, so memory stays
/// bounded whatever the peer sends. `None` at end of input.
fn read_line(reader: &mut impl BufRead, max: usize) -> io::Result<Option<Line>> {
    const KEEP: usize = 512;
    let mut line = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            if line.is_empty() && !too_long {
                return Ok(None);
            }
            break;
        }
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (buffer.get(..end).unwrap_or_default(), Some(end + 1)),
            None => (buffer, None),
        };
        if too_long {
            tail.extend_from_slice(chunk);
            let excess = tail.len().saturating_sub(KEEP);
            tail.drain(..excess);
        } else if line.len() + chunk.len() > max {
            too_long = true;
            line.extend_from_slice(chunk);
            let start = line.len().saturating_sub(KEEP);
            tail = line.get(start..).unwrap_or_default().to_vec();
            line.truncate(KEEP);
        } else {
            line.extend_from_slice(chunk);
        }
        let consumed = done.unwrap_or(buffer.len());
        reader.consume(consumed);
        if done.is_some() {
            break;
        }
    }
    if too_long {
        return Ok(Some(Line::TooLong { head: line, tail }));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(match String::from_utf8(line) {
        Ok(text) => Line::Text(text),
        Err(_) => Line::NotUtf8,
    }))
}

fn stop_child(child: &mut Child) {
    let deadline = Instant::now() + EXIT_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + EXIT_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).unwrap() {
            out.push(match line {
                Line::Text(t) => t,
                Line::NotUtf8 => "<not utf-8>".into(),
                Line::TooLong { head, tail } => format!(
                    "<too long: {}…{}>",
                    String::from_utf8_lossy(&head[..3]),
                    String::from_utf8_lossy(&tail[tail.len() - 3..])
                ),
            });
        }
        out
    }

    #[test]
    fn reads_lines_and_bounds_their_length() {
        assert_eq!(lines(b"ab\ncd\r\nef", 10), ["ab", "cd", "ef"]);
        assert_eq!(
            lines(b"0123456789abc\nok\n", 10),
            ["<too long: 012…abc>", "ok"]
        );
        assert_eq!(lines(b"\xff\xfe\nok\n", 10), ["<not utf-8>", "ok"]);
        assert_eq!(lines(b"", 10), Vec::<String>::new());
    }
}
