//! `warden audit`: read the decision log.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_store::{DecisionLog, DecisionRecord, RecordKind, SqliteStore};

use crate::cli::{CliResult, Format};
use crate::config;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Show the newest decision records, oldest first.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
struct TailArgs {
    /// The store (SQLite file). Defaults to the user's data directory.
    #[arg(long, env = "WARDEN_STORE")]
    store: Option<PathBuf>,
    /// How many records to show (0 with `--follow`: only new ones).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    lines: u32,
    /// Keep printing new records as they are written.
    #[arg(short, long)]
    follow: bool,
}

pub fn run(args: AuditArgs, format: Format) -> CliResult {
    match args.command {
        AuditCommand::Tail(args) => tail(&args, format),
    }
}

fn tail(args: &TailArgs, format: Format) -> CliResult {
    let path = config::store_path(args.store.as_deref())?;
    if !path.exists() {
        return Err(anyhow::anyhow!("no decision log at `{}`", path.display()).into());
    }
    let store = SqliteStore::open(&path)?;
    let records = store.tail(args.lines as usize)?;
    let mut out = io::stdout().lock();
    if format == Format::Human && records.is_empty() && args.lines > 0 {
        writeln!(out, "no decision records yet in `{}`", path.display())?;
    }
    let mut last = 0;
    for record in &records {
        print(&mut out, record, format)?;
        last = record.seq;
    }
    out.flush()?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        thread::sleep(Duration::from_millis(500));
        for record in store
            .since(last, 1000)
            .context("cannot follow the decision log")?
        {
            print(&mut out, &record, format)?;
            last = record.seq;
        }
        out.flush()?;
    }
}

fn print(out: &mut impl Write, record: &DecisionRecord, format: Format) -> io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(record).unwrap_or_default()),
        Format::Human => {
            let verdict = match record.kind {
                RecordKind::Decision => record.decision.clone().unwrap_or_default(),
                RecordKind::Outcome => format!("→ {}", record.outcome),
            };
            let target = match &record.tool {
                Some(tool) => format!("{}/{}", record.server, tool),
                None => record.server.clone(),
            };
            writeln!(
                out,
                "{}  {:<16}  {:<12}  {:<26}  {:<18}  {}  [{}]",
                short_time(&record.time),
                verdict,
                shown(&record.method),
                shown(&target),
                shown_text(&record.principal),
                shown_text(&record.message),
                shown_text(&record.decision_id)
            )
        }
    }
}

/// `2026-12-03T19:28:41.725727488Z` as `2026-12-03 19:28:41.725`.
fn short_time(time: &str) -> String {
    let trimmed = time.trim_end_matches('Z');
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
    format!("{}.{millis}", whole.replacen('T', " ", 1))
}

/// A name or method as it may be printed to a terminal. These come from
/// agents: a newline would forge a record line, an escape sequence would
/// drive the operator's terminal, bidi controls or invisible characters
/// would make two names look alike, and spaces would fake extra columns.
/// Anything outside the characters MCP names use is therefore shown quoted,
/// with every other character escaped.
fn shown(field: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@<>\"`'=+,*?#()[]{}".contains(c);
    if !field.is_empty() && field.chars().all(plain) && !field.contains('"') {
        return std::borrow::Cow::Borrowed(field);
    }
    std::borrow::Cow::Owned(format!("\"{}\"", escaped(field, |c| plain(c) && c != '"')))
}

/// A sentence of Warden's own, which may quote agent-supplied names: spaces
/// stay, everything else outside printable ASCII is escaped.
fn shown_text(text: &str) -> String {
    escaped(text, |c| c == ' ' || c.is_ascii_graphic())
}

fn escaped(text: &str, keep: impl Fn(char) -> bool) -> String {
    text.chars()
        .map(|c| {
            if keep(c) {
                c.to_string()
            } else if c == '"' {
                "\\\"".to_owned()
            } else {
                c.escape_unicode().to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{shown, shown_text};

    #[test]
    fn hostile_fields_cannot_forge_lines_or_drive_the_terminal() {
        assert_eq!(shown("fs/read_file"), "fs/read_file");
        assert_eq!(shown("Agent::\"claude\""), "\"Agent::\\\"claude\\\"\"");
        assert_eq!(shown("a\nb"), "\"a\\u{a}b\"");
        assert_eq!(shown("\u{1b}[2J"), "\"\\u{1b}[2J\"");
        assert_eq!(shown("echo "), "\"echo\\u{20}\"");
        assert_eq!(shown("x\u{2066}y"), "\"x\\u{2066}y\"");
        assert_eq!(shown("x\u{301}"), "\"x\\u{301}\"");
        assert_eq!(
            shown("x  default  Agent"),
            "\"x\\u{20}\\u{20}default\\u{20}\\u{20}Agent\""
        );
        assert_eq!(
            shown_text("unknown tool `a\u{1b}b` here"),
            "unknown tool `a\\u{1b}b` here"
        );
    }
}
