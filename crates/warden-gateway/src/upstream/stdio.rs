//! The stdio transport: one child process per connection, one message per
//! line each way.
//!
//! This module owns the child's lifetime (start, polite stop, kill, reap)
//! and the framing of its stdin and stdout; the child's stderr is only
//! logged. What the lines mean is the relay's business.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    channels, Capped, EventSink, TransportEnds, UpstreamConnection, UpstreamError, UpstreamOptions,
};

/// How long a child gets to exit after its stdin is closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long the output of an exited child may take to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Longest stderr line logged whole.
const STDERR_LINE_MAX: usize = 8 * 1024;

/// Starts the child and the task that runs it.
pub(super) fn connect(
    command: &str,
    args: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    options: &UpstreamOptions,
) -> Result<UpstreamConnection, UpstreamError> {
    let spawn_error = |source| UpstreamError::Spawn {
        program: command.to_owned(),
        source,
    };
    let mut cmd = Command::new(command);
    // `envs` adds to the environment Warden inherited; it replaces nothing
    // else.
    cmd.args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    // LIMITATION: only the child itself is stopped and reaped. A server that
    // forks helpers which ignore the end of their input can leave them
    // running after the session ends (Warden does not run children in a
    // process group of their own, and cannot ask the kernel to kill them
    // when Warden dies without unsafe code).
    let mut child = cmd.spawn().map_err(spawn_error)?;

    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(spawn_error(io::Error::other(
            "the child's standard streams are not available",
        )));
    };
    let pid = child.id();
    tracing::debug!(process.pid = ?pid, process.executable.name = %command, "upstream server started");

    let (ends, caller) = channels();
    let pipes = Pipes {
        stdin,
        stdout,
        stderr,
    };
    let task = tokio::spawn(supervise(child, pipes, ends, options.max_message_bytes));
    Ok(caller.connection(task))
}

struct Pipes {
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

/// Why the supervisor stopped waiting.
enum Ending {
    /// The caller closed (or dropped) the connection.
    Stop,
    /// The child exited.
    Exited(io::Result<ExitStatus>),
    /// The child closed its stdout.
    OutputClosed,
}

/// Runs one child: feeds its stdin, reads its stdout and stderr, and ends
/// it, in order, with exactly one `Closed` unless the caller closed first.
async fn supervise(mut child: Child, pipes: Pipes, ends: TransportEnds, max: usize) {
    let TransportEnds {
        messages,
        events,
        stop,
    } = ends;
    let pid = child.id();
    let (stop_writing, writing_stopped) = oneshot::channel::<()>();
    let _writer = tokio::spawn(write_messages(pipes.stdin, messages, writing_stopped));
    let mut reader = tokio::spawn(read_messages(
        BufReader::new(pipes.stdout),
        events.clone(),
        max,
    ));
    let logger = tokio::spawn(log_stderr(BufReader::new(pipes.stderr), pid));

    let ending = tokio::select! {
        _ = stop => Ending::Stop,
        status = child.wait() => Ending::Exited(status),
        _ = &mut reader => Ending::OutputClosed,
    };
    // Closing the child's stdin is the polite way to ask an MCP server to
    // stop; it also makes every later `send` fail.
    drop(stop_writing);

    match ending {
        Ending::Stop => {
            let status = stop_child(&mut child).await;
            tracing::debug!(process.pid = ?pid, process.exit.status = %describe(&status), "upstream server stopped");
            reader.abort();
            finish(logger, DRAIN_GRACE).await;
        }
        Ending::Exited(status) => {
            // What the child wrote before exiting is still in the pipe.
            finish(reader, DRAIN_GRACE).await;
            finish(logger, DRAIN_GRACE).await;
            events.close(describe(&status)).await;
        }
        Ending::OutputClosed => {
            let status = stop_child(&mut child).await;
            finish(logger, DRAIN_GRACE).await;
            events.close(describe(&status)).await;
        }
    }
}

/// Waits for the child to exit on its own, then kills it; always reaps it.
async fn stop_child(child: &mut Child) -> io::Result<ExitStatus> {
    if let Ok(status) = tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        return status;
    }
    if let Err(error) = child.start_kill() {
        tracing::warn!(error = %error, "cannot kill the upstream server");
    }
    child.wait().await
}

/// Lets a task finish for at most `grace`, then aborts it.
async fn finish(mut task: JoinHandle<()>, grace: Duration) {
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        task.abort();
    }
}

/// For operators: how the child ended.
fn describe(status: &io::Result<ExitStatus>) -> String {
    let status = match status {
        Ok(status) => status,
        Err(error) => return format!("upstream server exited; its status is unknown: {error}"),
    };
    if let Some(code) = status.code() {
        return format!("upstream server exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("upstream server was killed by signal {signal}");
        }
    }
    format!("upstream server exited with {status}")
}

/// Writes each queued message as one line until stopped, the queue ends or
/// the child stops reading.
async fn write_messages(
    mut stdin: ChildStdin,
    mut messages: mpsc::Receiver<String>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            _ = &mut stop => break,
            message = messages.recv() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let mut line = one_line(message);
        line.push('\n');
        let written = tokio::select! {
            _ = &mut stop => break,
            written = write_line(&mut stdin, &line) => written,
        };
        if let Err(error) = written {
            tracing::debug!(error = %error, "cannot write to the upstream server");
            break;
        }
    }
    // Dropping `stdin` closes the child's input; dropping `messages` makes
    // every later send fail.
}

async fn write_line(stdin: &mut ChildStdin, line: &str) -> io::Result<()> {
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

/// The message on one line. In valid JSON a line break can only be
/// whitespace between tokens, so a space means the same; passed on, it
/// would split one message into two frames (and let a crafted message
/// smuggle a second one past the relay).
fn one_line(message: String) -> String {
    if message.contains(['\n', '\r']) {
        message.replace(['\n', '\r'], " ")
    } else {
        message
    }
}

/// Turns each line of the child's stdout into an event, until it ends.
async fn read_messages(mut stdout: impl AsyncBufRead + Unpin, events: EventSink, max: usize) {
    loop {
        let line = match read_line(&mut stdout, max).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(error = %error, "cannot read the upstream server's output");
                break;
            }
        };
        if line.is_empty() {
            continue;
        }
        if !events.emit(line.finish()).await {
            break;
        }
    }
}

/// Reads one line (without its line ending) of at most `max` bytes kept
/// whole; a longer one is read to its end and kept only at both ends.
/// `None` at the end of the output.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> io::Result<Option<Capped>> {
    let mut line = Capped::new(max);
    let mut seen = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            if !seen {
                return Ok(None);
            }
            break;
        }
        seen = true;
        let newline = buffer.iter().position(|&b| b == b'\n');
        let end = newline.unwrap_or(buffer.len());
        line.push(buffer.get(..end).unwrap_or_default());
        reader.consume(newline.map_or(end, |at| at + 1));
        if newline.is_some() {
            break;
        }
    }
    line.trim_cr();
    Ok(Some(line))
}

/// Logs each line of the child's stderr, so it never blocks on a full pipe.
async fn log_stderr(mut stderr: impl AsyncBufRead + Unpin, pid: Option<u32>) {
    while let Ok(Some(line)) = read_line(&mut stderr, STDERR_LINE_MAX).await {
        if line.is_empty() {
            continue;
        }
        let line = line.finish_lossy();
        tracing::debug!(process.pid = ?pid, mcp.server.stderr = %line, "upstream stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamEvent;

    async fn lines(input: &[u8], max: usize) -> Vec<UpstreamEvent> {
        let mut reader = BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).await.unwrap() {
            out.push(line.finish());
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_across_small_reads_and_crlf() {
        let out = lines(b"{\"a\":1}\r\nsecond line\nlast", 100).await;
        let texts: Vec<_> = out
            .into_iter()
            .map(|e| match e {
                UpstreamEvent::Line(t) => t,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(texts, ["{\"a\":1}", "second line", "last"]);
    }

    #[tokio::test]
    async fn a_long_line_is_oversized_and_reading_goes_on_after_it() {
        let mut input = vec![b'x'; 3000];
        input.extend_from_slice(b"\nnext\n\xff\xfe\n");
        let out = lines(&input, 1000).await;
        assert!(
            matches!(&out[0], UpstreamEvent::Oversized { head, tail } if head.len() == 512 && tail.len() == 512)
        );
        assert!(matches!(&out[1], UpstreamEvent::Line(t) if t == "next"));
        assert!(matches!(&out[2], UpstreamEvent::Garbage));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn line_breaks_in_a_message_become_spaces() {
        assert_eq!(one_line("{\n\"a\":\r\n1}".into()), "{ \"a\":  1}");
        assert_eq!(one_line("{}".into()), "{}");
    }

    #[test]
    fn exit_descriptions_name_the_status() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe(&Ok(ExitStatus::from_raw(3 << 8))),
            "upstream server exited with status 3"
        );
        assert_eq!(
            describe(&Ok(ExitStatus::from_raw(9))),
            "upstream server was killed by signal 9"
        );
    }
}
