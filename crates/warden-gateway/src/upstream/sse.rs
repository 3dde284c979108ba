//! Server-sent events: the incremental parser both HTTP transports read
//! event streams with, and the legacy HTTP+SSE transport (MCP 2024-11-05).
//!
//! The parser follows the WHATWG event-stream rules that matter here:
//! lines end in CR, LF or CRLF (also when a chunk ends between CR and LF),
//! `data:` lines of one event are joined with `\n`, a blank line ends an
//! event, comments and unknown fields are skipped, `event:` names the type,
//! `id:` is remembered for resumption and `retry:` for reconnection. Each
//! event's data is bounded like any message; memory per stream stays
//! bounded whatever the server sends.
//!
//! The legacy transport owns one event stream per connection: it waits for
//! the `endpoint` event, POSTs every message to that endpoint (same origin
//! only) and delivers `message` events; the connection ends with the stream.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use tokio::task::JoinSet;
use url::Url;

use super::http::{answer_failure, error_status, is_event_stream, Outgoing};
use super::{
    channels, header_map, http_client, redacted, Capped, EventSink, TransportEnds,
    UpstreamConnection, UpstreamError, UpstreamEvent, UpstreamOptions,
};

/// Longest `event:` value kept.
const EVENT_TYPE_MAX: usize = 64;
/// Longest `id:` value kept; a longer id is ignored.
const EVENT_ID_MAX: usize = 1024;
/// Longest `retry:` value read.
const RETRY_MAX: usize = 16;
/// Longest field name read; a longer one names no known field.
const FIELD_NAME_MAX: usize = 16;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug)]
pub(super) struct SseEvent {
    /// The `event:` type; `message` when none was given.
    pub(super) kind: String,
    /// The joined `data:` lines, as a message (line, oversized or garbage).
    pub(super) data: UpstreamEvent,
}

impl SseEvent {
    /// Whether this event carries a message: of type `message`, with data.
    /// Empty events (stream priming, keep-alives) carry none.
    pub(super) fn into_message(self) -> Option<UpstreamEvent> {
        if self.kind != "message" {
            return None;
        }
        match &self.data {
            UpstreamEvent::Line(text) if text.trim().is_empty() => None,
            _ => Some(self.data),
        }
    }
}

/// The field a line's value goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Data,
    Event,
    Id,
    Retry,
    Ignored,
}

/// Where the parser is within the current line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    /// Reading the field name.
    Name,
    /// Just after the colon: one leading space is dropped.
    ValueStart(Field),
    /// Reading the value.
    Value(Field),
}

/// An incremental event-stream parser: feed it chunks as they arrive.
#[derive(Debug)]
pub(super) struct SseParser {
    max: usize,
    started: bool,
    /// The previous chunk ended with CR: an LF first in the next one ends
    /// nothing.
    after_cr: bool,
    position: Position,
    name: Vec<u8>,
    name_too_long: bool,
    data: Capped,
    has_data: bool,
    kind: Vec<u8>,
    id: Vec<u8>,
    id_too_long: bool,
    retry_field: Vec<u8>,
    last_event_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser whose events' data is bounded by `max` bytes.
    pub(super) fn new(max: usize) -> SseParser {
        SseParser {
            max,
            started: false,
            after_cr: false,
            position: Position::Name,
            name: Vec::new(),
            name_too_long: false,
            data: Capped::new(max),
            has_data: false,
            kind: Vec::new(),
            id: Vec::new(),
            id_too_long: false,
            retry_field: Vec::new(),
            last_event_id: None,
            retry: None,
        }
    }

    /// The last event id the stream set, for `Last-Event-ID`.
    pub(super) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The reconnection delay the stream asked for.
    pub(super) fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Starts reading a new stream (a reconnection): the event in progress
    /// is dropped, the last event id and retry delay are kept.
    pub(super) fn restart(&mut self) {
        let last_event_id = self.last_event_id.take();
        let retry = self.retry;
        *self = SseParser::new(self.max);
        self.last_event_id = last_event_id;
        self.retry = retry;
    }

    /// Reads one chunk, appending each event it completes to `out`.
    pub(super) fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if !self.started && !rest.is_empty() {
            self.started = true;
            // LIMITATION: a byte-order mark is skipped only when the first
            // chunk holds all of it; servers do not send one in practice.
            rest = rest.strip_prefix(BOM).unwrap_or(rest);
        }
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(after) = rest.strip_prefix(b"\n") {
                    rest = after;
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    let (run, after) = rest.split_at(end);
                    self.take(run);
                    self.after_cr = after.first() == Some(&b'\r');
                    self.end_line(out);
                    rest = after.get(1..).unwrap_or_default();
                }
                None => {
                    self.take(rest);
                    rest = &[];
                }
            }
        }
    }

    /// Takes bytes of the current line (no line ending in them).
    fn take(&mut self, mut run: &[u8]) {
        while !run.is_empty() {
            match self.position {
                Position::Name => match run.iter().position(|&b| b == b':') {
                    Some(colon) => {
                        self.push_name(run.get(..colon).unwrap_or_default());
                        let field = self.start_field();
                        self.position = Position::ValueStart(field);
                        run = run.get(colon + 1..).unwrap_or_default();
                    }
                    None => {
                        self.push_name(run);
                        run = &[];
                    }
                },
                Position::ValueStart(field) => {
                    self.position = Position::Value(field);
                    run = run.strip_prefix(b" ").unwrap_or(run);
                }
                Position::Value(field) => {
                    self.push_value(field, run);
                    run = &[];
                }
            }
        }
    }

    fn push_name(&mut self, bytes: &[u8]) {
        if self.name.len() + bytes.len() > FIELD_NAME_MAX {
            self.name_too_long = true;
        } else {
            self.name.extend_from_slice(bytes);
        }
    }

    /// The field the name read so far names; readies its value.
    fn start_field(&mut self) -> Field {
        let field = match (self.name_too_long, self.name.as_slice()) {
            (true, _) => Field::Ignored,
            (false, b"data") => Field::Data,
            (false, b"event") => Field::Event,
            (false, b"id") => Field::Id,
            (false, b"retry") => Field::Retry,
            // Comments (an empty name) and unknown fields.
            _ => Field::Ignored,
        };
        match field {
            Field::Data => {
                if self.has_data {
                    self.data.push(b"\n");
                }
                self.has_data = true;
            }
            Field::Event => self.kind.clear(),
            Field::Id => {
                self.id.clear();
                self.id_too_long = false;
            }
            Field::Retry => self.retry_field.clear(),
            Field::Ignored => {}
        }
        field
    }

    fn push_value(&mut self, field: Field, bytes: &[u8]) {
        let bounded = |buffer: &mut Vec<u8>, max: usize| {
            let room = max.saturating_sub(buffer.len());
            buffer.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            bytes.len() > room
        };
        match field {
            Field::Data => self.data.push(bytes),
            Field::Event => {
                bounded(&mut self.kind, EVENT_TYPE_MAX);
            }
            Field::Id => {
                if bounded(&mut self.id, EVENT_ID_MAX) {
                    self.id_too_long = true;
                }
            }
            Field::Retry => {
                bounded(&mut self.retry_field, RETRY_MAX);
            }
            Field::Ignored => {}
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let field = match self.position {
            Position::Name if self.name.is_empty() && !self.name_too_long => {
                self.dispatch(out);
                return;
            }
            // A line without a colon is a field with an empty value.
            Position::Name => self.start_field(),
            Position::ValueStart(field) | Position::Value(field) => field,
        };
        match field {
            Field::Id => {
                // An id with NUL in it is ignored, as the standard says; an
                // empty one clears the last id.
                if !self.id_too_long && !self.id.contains(&0) {
                    self.last_event_id = match String::from_utf8(std::mem::take(&mut self.id)) {
                        Ok(id) if !id.is_empty() => Some(id),
                        Ok(_) => None,
                        Err(_) => self.last_event_id.take(),
                    };
                }
            }
            Field::Retry => {
                let digits = std::str::from_utf8(&self.retry_field).unwrap_or_default();
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(ms) = digits.parse::<u64>() {
                        self.retry = Some(Duration::from_millis(ms));
                    }
                }
            }
            Field::Data | Field::Event | Field::Ignored => {}
        }
        self.position = Position::Name;
        self.name.clear();
        self.name_too_long = false;
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let kind = std::mem::take(&mut self.kind);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = std::mem::replace(&mut self.data, Capped::new(self.max));
        let kind = if kind.is_empty() {
            "message".to_owned()
        } else {
            String::from_utf8_lossy(&kind).into_owned()
        };
        out.push(SseEvent {
            kind,
            data: data.finish(),
        });
    }
}

/// Opens the event stream, waits for the message endpoint and starts the
/// connection's task.
pub(super) async fn connect(
    url: &Url,
    headers: &[(String, String)],
    options: &UpstreamOptions,
) -> Result<UpstreamConnection, UpstreamError> {
    let configured = header_map(headers)?;
    let client = http_client(options)?;
    let mut stream_headers = configured.clone();
    stream_headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));

    let opening = async {
        let response = client
            .get(url.clone())
            .headers(stream_headers)
            .send()
            .await
            .map_err(|error| {
                UpstreamError::Http(format!(
                    "cannot reach the upstream server at `{}`: {error}",
                    redacted(url)
                ))
            })?;
        if !response.status().is_success() || !is_event_stream(&response) {
            return Err(UpstreamError::Http(format!(
                "upstream server at `{}` answered HTTP {} instead of opening an event stream",
                redacted(url),
                response.status().as_u16()
            )));
        }
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new(options.max_message_bytes);
        let mut early = Vec::new();
        loop {
            let Some(chunk) = body.next().await else {
                return Err(UpstreamError::Http(format!(
                    "upstream server at `{}` ended its event stream before naming an endpoint",
                    redacted(url)
                )));
            };
            let chunk = chunk.map_err(|error| {
                UpstreamError::Http(format!(
                    "cannot read the event stream of `{}`: {error}",
                    redacted(url)
                ))
            })?;
            let mut events = Vec::new();
            parser.feed(&chunk, &mut events);
            let mut endpoint = None;
            for event in events {
                match event {
                    SseEvent {
                        kind,
                        data: UpstreamEvent::Line(text),
                    } if endpoint.is_none() && kind == "endpoint" => endpoint = Some(text),
                    other => early.push(other),
                }
            }
            if let Some(endpoint) = endpoint {
                return Ok((endpoint, body, parser, early));
            }
        }
    };
    let (endpoint, body, parser, early) =
        match tokio::time::timeout(options.connect_timeout, opening).await {
            Ok(opened) => opened?,
            Err(_) => {
                return Err(UpstreamError::Http(format!(
                    "upstream server at `{}` named no message endpoint in time",
                    redacted(url)
                )))
            }
        };
    let endpoint = same_origin_endpoint(url, &endpoint)?;
    tracing::debug!(upstream.url = %redacted(url), upstream.endpoint = %redacted(&endpoint), "upstream event stream open");

    let (ends, caller) = channels();
    let legacy = Legacy {
        client,
        endpoint,
        headers: configured,
        options: options.clone(),
        events: ends.events.clone(),
    };
    let stream = Box::pin(body);
    let task = tokio::spawn(run(legacy, ends, stream, parser, early));
    Ok(caller.connection(task))
}

/// The endpoint an `endpoint` event names, resolved against the event
/// stream's URL. Only the stream's own origin is accepted: the messages
/// carry the brokered credentials, and a server must not be able to send
/// them elsewhere.
fn same_origin_endpoint(stream: &Url, announced: &str) -> Result<Url, UpstreamError> {
    let foreign = |endpoint: String| UpstreamError::ForeignEndpoint {
        url: redacted(stream),
        endpoint,
    };
    let endpoint = stream
        .join(announced.trim())
        .map_err(|_| foreign(announced.chars().take(200).collect()))?;
    if endpoint.origin() != stream.origin() {
        return Err(foreign(redacted(&endpoint)));
    }
    Ok(endpoint)
}

/// What the legacy transport's tasks share.
#[derive(Clone)]
struct Legacy {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    options: UpstreamOptions,
    events: EventSink,
}

type Body = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send>,
>;

/// Runs one legacy connection: posts messages, delivers `message` events,
/// and ends with the stream.
async fn run(
    legacy: Legacy,
    ends: TransportEnds,
    mut body: Body,
    mut parser: SseParser,
    early: Vec<SseEvent>,
) {
    let TransportEnds {
        mut messages,
        events,
        mut stop,
    } = ends;
    for event in early {
        if let Some(message) = event.into_message() {
            events.emit(message).await;
        }
    }
    let mut posts = JoinSet::new();
    let mut parsed = Vec::new();
    let why = loop {
        tokio::select! {
            _ = &mut stop => return,
            message = messages.recv() => match message {
                Some(message) => {
                    posts.spawn(post(legacy.clone(), message));
                }
                None => return,
            },
            chunk = body.next() => match chunk {
                Some(Ok(chunk)) => {
                    parser.feed(&chunk, &mut parsed);
                    for event in parsed.drain(..) {
                        if let Some(message) = event.into_message() {
                            events.emit(message).await;
                        }
                    }
                }
                Some(Err(error)) => break format!("upstream event stream failed: {error}"),
                None => break "upstream event stream ended".to_owned(),
            },
            Some(_) = posts.join_next(), if !posts.is_empty() => {}
        }
    };
    events.close(why).await;
}

/// Posts one message to the endpoint; failures become error answers.
async fn post(legacy: Legacy, body: String) {
    let outgoing = Outgoing::read(&body);
    let mut headers = legacy.headers.clone();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = legacy
        .client
        .post(legacy.endpoint.clone())
        .headers(headers)
        .body(body);
    let sent = tokio::time::timeout(legacy.options.request_timeout, request.send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(upstream.url = %redacted(&legacy.endpoint), error = %error, "upstream server could not be reached");
            answer_failure(
                &legacy.events,
                &outgoing.requests,
                "upstream server could not be reached",
            )
            .await;
            return;
        }
        Err(_) => {
            tracing::warn!(upstream.url = %redacted(&legacy.endpoint), "upstream server did not answer in time");
            let message = "upstream server could not be reached in time";
            answer_failure(&legacy.events, &outgoing.requests, message).await;
            return;
        }
    };
    if !response.status().is_success() {
        error_status(
            &legacy.events,
            response,
            &outgoing.requests,
            legacy.options.max_message_bytes,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]], max: usize) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        (out, parser)
    }

    fn texts(events: &[SseEvent]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| match &e.data {
                UpstreamEvent::Line(t) => (e.kind.clone(), t.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn reads_events_split_anywhere() {
        let stream = b"event: message\nid: 7\ndata: {\"a\":1}\n\ndata:{\"b\":2}\n\n";
        let whole = texts(&parse(&[stream], 1000).0);
        assert_eq!(
            whole,
            [
                ("message".to_owned(), "{\"a\":1}".to_owned()),
                ("message".to_owned(), "{\"b\":2}".to_owned())
            ]
        );
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            let (events, parser) = parse(&[a, b], 1000);
            assert_eq!(texts(&events), whole, "split at {split}");
            assert_eq!(parser.last_event_id(), Some("7"));
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(texts(&parse(&bytes, 1000).0), whole);
    }

    #[test]
    fn accepts_crlf_and_cr_line_endings_even_split_between_cr_and_lf() {
        let (events, _) = parse(&[b"data: a\r", b"\ndata: b\r\n\r", b"\ndata: c\r\r"], 100);
        assert_eq!(
            texts(&events),
            [
                ("message".to_owned(), "a\nb".to_owned()),
                ("message".to_owned(), "c".to_owned())
            ]
        );
    }

    #[test]
    fn joins_data_lines_and_skips_comments_and_unknown_fields() {
        let stream = b": keep-alive\nretry: 2500\nfoo: bar\ndata: line one\ndata\ndata:  two\n\n";
        let (events, parser) = parse(&[stream], 100);
        assert_eq!(
            texts(&events),
            [("message".to_owned(), "line one\n\n two".to_owned())]
        );
        assert_eq!(parser.retry(), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn events_without_data_are_not_dispatched_and_priming_events_carry_no_message() {
        let (events, parser) = parse(&[b"id: p1\n\nid: p2\ndata:\n\nevent: endpoint\n\n"], 100);
        assert_eq!(events.len(), 1);
        assert_eq!(parser.last_event_id(), Some("p2"));
        let event = events.into_iter().next().unwrap();
        assert!(event.into_message().is_none());
    }

    #[test]
    fn names_the_event_type_and_keeps_only_message_events_as_messages() {
        let (events, _) = parse(
            &[b"event: endpoint\ndata: /message?s=1\n\ndata: {}\n\n"],
            100,
        );
        let mut events = events.into_iter();
        let endpoint = events.next().unwrap();
        assert_eq!(endpoint.kind, "endpoint");
        assert!(endpoint.into_message().is_none());
        assert!(
            matches!(events.next().unwrap().into_message(), Some(UpstreamEvent::Line(t)) if t == "{}")
        );
    }

    #[test]
    fn an_oversized_event_keeps_both_ends_and_the_next_event_is_whole() {
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 5000));
        stream.extend_from_slice(b"END\n\ndata: small\n\n");
        let chunks: Vec<&[u8]> = stream.chunks(333).collect();
        let (events, _) = parse(&chunks, 1000);
        assert_eq!(events.len(), 2);
        match &events[0].data {
            UpstreamEvent::Oversized { head, tail } => {
                assert_eq!(head.len(), 512);
                assert!(tail.ends_with("xEND"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(&events[1].data, UpstreamEvent::Line(t) if t == "small"));
    }

    #[test]
    fn a_huge_ignored_field_costs_no_memory() {
        let mut stream = b": ".to_vec();
        stream.extend(std::iter::repeat_n(b'c', 100_000));
        stream.extend_from_slice(b"\nid: ");
        stream.extend(std::iter::repeat_n(b'i', 5000));
        stream.extend_from_slice(b"\ndata: ok\n\n");
        let (events, parser) = parse(&[&stream], 100);
        assert_eq!(texts(&events), [("message".to_owned(), "ok".to_owned())]);
        assert_eq!(parser.last_event_id(), None);
        assert!(parser.name.capacity() <= 64);
    }

    #[test]
    fn a_restart_drops_the_partial_event_and_keeps_the_last_id() {
        let mut parser = SseParser::new(100);
        let mut out = Vec::new();
        parser.feed(b"id: 4\ndata: done\n\ndata: half", &mut out);
        parser.restart();
        parser.feed(b"data: new\n\n", &mut out);
        assert_eq!(
            texts(&out),
            [
                ("message".to_owned(), "done".to_owned()),
                ("message".to_owned(), "new".to_owned())
            ]
        );
        assert_eq!(parser.last_event_id(), Some("4"));
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let (events, _) = parse(&[b"\xEF\xBB\xBFdata: x\n\n"], 100);
        assert_eq!(texts(&events), [("message".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn endpoints_must_stay_on_the_stream_origin() {
        let stream = Url::parse("http://127.0.0.1:3001/sse").unwrap();
        let relative = same_origin_endpoint(&stream, "/message?sessionId=abc").unwrap();
        assert_eq!(
            relative.as_str(),
            "http://127.0.0.1:3001/message?sessionId=abc"
        );
        let absolute = same_origin_endpoint(&stream, "http://127.0.0.1:3001/m").unwrap();
        assert_eq!(absolute.path(), "/m");

        for other in [
            "http://evil.example/message",
            "https://127.0.0.1:3001/message",
            "http://127.0.0.1:3002/message",
            "//evil.example/message",
        ] {
            let error = same_origin_endpoint(&stream, other).unwrap_err();
            assert!(
                error.to_string().starts_with(
                    "upstream server at `http://127.0.0.1:3001/sse` announced a message endpoint on another origin"
                ),
                "{other}: {error}"
            );
        }
    }
}
