//! The stateless 2026-07-28 revision of MCP on the gateway's endpoints.
//!
//! A 2026-07-28 client sends no `initialize` and holds no session: every
//! request is one POST whose `params._meta` carries the protocol version and
//! the client's capabilities, with `Mcp-Method` (and, for a named target,
//! `Mcp-Name`) mirrored in HTTP headers. This module owns what that
//! revision asks of the wire: the checks of a request's envelope and
//! headers, the `server/discover` answer, and the translation between a
//! modern request and the handshake-era session Warden speaks to the
//! upstream on the client's behalf (upstream servers today speak the
//! handshake versions). Every decision is still the relay's: a modern
//! request reaches the same relay, policy and records as any other.
//!
//! The checks, in order, first failure wins (as the official SDKs run them):
//! an envelope without the version or the capabilities is -32602; headers
//! that disagree with the body (`MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`) are -32020; a version Warden does not speak is -32022 with
//! the supported list. All are HTTP 400, and nothing is forwarded.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use warden_mcp::jsonrpc::{self, Id, Message, Parsed};

/// The stateless revision Warden serves.
pub const MODERN_VERSION: &str = "2026-07-28";
/// JSON-RPC error: headers that disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// JSON-RPC error: a protocol version the server does not speak.
pub const UNSUPPORTED_VERSION: i64 = -32022;
/// The version the upstream session is opened with.
pub const UPSTREAM_VERSION: &str = "2025-11-25";

const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// What a modern request says about its client.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The protocol version it speaks.
    pub version: String,
    /// Its `clientInfo`, when given.
    pub client_info: Option<Value>,
    /// Its capabilities.
    pub client_capabilities: Value,
}

/// Why a modern request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The JSON-RPC error code.
    pub code: i64,
    /// What is wrong.
    pub message: String,
    /// Details, for an unsupported version.
    pub data: Option<Value>,
}

/// Whether a request sent without a session belongs to the modern
/// revision: `server/discover`, a request whose `_meta` names a protocol
/// version, or one whose `MCP-Protocol-Version` header says 2026-07-28 (its
/// envelope is then checked, and a missing one named).
pub fn is_modern(message: &Message, headers: &HeaderMap) -> bool {
    match message {
        Message::Request { method, .. } if method == "server/discover" => true,
        Message::Request { params, .. } => {
            params
                .get("_meta")
                .and_then(|meta| meta.get(VERSION_KEY))
                .is_some()
                || header(headers, "mcp-protocol-version") == Some(MODERN_VERSION)
        }
        _ => false,
    }
}

/// Whether a sessionless notification is the modern revision's (which
/// defines none from client to server: it is acknowledged and dropped).
pub fn is_modern_notification(message: &Message, headers: &HeaderMap) -> bool {
    matches!(message, Message::Notification { .. })
        && header(headers, "mcp-protocol-version") == Some(MODERN_VERSION)
}

/// The checks a modern request must pass before anything else.
pub fn check(message: &Message, headers: &HeaderMap) -> Result<Envelope, Rejection> {
    let Message::Request { method, params, .. } = message else {
        return Err(rejection(jsonrpc::INVALID_REQUEST, "not a request"));
    };
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Err(rejection(
            jsonrpc::INVALID_PARAMS,
            "`params._meta` must be an object with the protocol version and client capabilities",
        ));
    };
    let missing: Vec<&str> = [VERSION_KEY, CAPABILITIES_KEY]
        .into_iter()
        .filter(|key| !meta.contains_key(*key))
        .collect();
    if !missing.is_empty() {
        let message = format!("`params._meta` lacks `{}`", missing.join("`, `"));
        return Err(rejection(jsonrpc::INVALID_PARAMS, &message));
    }
    let version = meta.get(VERSION_KEY).and_then(Value::as_str);
    check_headers(method, params, version, headers)?;
    let Some(version) = version else {
        return Err(rejection(
            jsonrpc::INVALID_PARAMS,
            "the protocol version must be a string",
        ));
    };
    if version != MODERN_VERSION {
        return Err(Rejection {
            code: UNSUPPORTED_VERSION,
            message: "unsupported protocol version".to_owned(),
            data: Some(json!({"supported": [MODERN_VERSION], "requested": version})),
        });
    }
    Ok(Envelope {
        version: version.to_owned(),
        client_info: meta.get(INFO_KEY).cloned(),
        client_capabilities: meta.get(CAPABILITIES_KEY).cloned().unwrap_or(json!({})),
    })
}

/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` must say what the
/// body says: an intermediary that routes or authorizes on the headers must
/// not be shown one request while the server runs another.
fn check_headers(
    method: &str,
    params: &Value,
    version: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let mismatch = |what: &str| rejection(HEADER_MISMATCH, what);
    for name in ["mcp-protocol-version", "mcp-method", "mcp-name"] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(mismatch(&format!("`{name}` is given more than once")));
        }
    }
    let sent = header(headers, "mcp-protocol-version");
    if sent.is_none() {
        return Err(mismatch("the `MCP-Protocol-Version` header is missing"));
    }
    if version.is_none() || sent != version {
        return Err(mismatch(
            "the `MCP-Protocol-Version` header does not match the request's protocol version",
        ));
    }
    match header(headers, "mcp-method") {
        None => return Err(mismatch("the `Mcp-Method` header is missing")),
        Some(sent) if sent != method => {
            return Err(mismatch(
                "the `Mcp-Method` header does not match the request's method",
            ))
        }
        Some(_) => {}
    }
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key {
        let body = params.get(key).and_then(Value::as_str);
        let sent = header(headers, "mcp-name");
        if body.is_some() && sent.is_none() {
            return Err(mismatch("the `Mcp-Name` header is missing"));
        }
        let named = sent.and_then(decode_header_value);
        if body.is_some() && named.as_deref() != body {
            return Err(mismatch(&format!(
                "the `Mcp-Name` header does not match the request's `{key}`"
            )));
        }
    }
    Ok(())
}

/// A header value as the revision encodes it: plain visible ASCII, or
/// `=?base64?…?=` around the UTF-8 text. A malformed encoding is `None`, so
/// it never matches anything.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(payload).ok()?;
    // Only the canonical encoding: two spellings of one name would let a
    // header and a body disagree unnoticed.
    if engine.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn rejection(code: i64, message: &str) -> Rejection {
    Rejection {
        code,
        message: message.to_owned(),
        data: None,
    }
}

/// The `initialize` Warden sends the upstream for a stateless client.
pub fn initialize(id: &Id, envelope: &Envelope) -> String {
    let info = envelope
        .client_info
        .clone()
        .unwrap_or_else(|| json!({"name": "stateless-client", "version": "0"}));
    let params = json!({
        "protocolVersion": UPSTREAM_VERSION,
        "capabilities": envelope.client_capabilities,
        "clientInfo": info,
    });
    jsonrpc::request(id, "initialize", &params)
}

/// The `server/discover` answer: what the upstream said when Warden opened
/// its session, as the modern revision words it. Lists are filtered per
/// caller, so nothing here may be shared between callers' caches.
pub fn discover_result(initialized: &Value) -> Value {
    let mut result = Map::new();
    result.insert("resultType".into(), json!("complete"));
    result.insert("supportedVersions".into(), json!([MODERN_VERSION]));
    let capabilities = initialized
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    result.insert("capabilities".into(), capabilities);
    for key in ["serverInfo", "instructions"] {
        if let Some(value) = initialized.get(key) {
            result.insert(key.into(), value.clone());
        }
    }
    if let Some(info) = initialized.get("serverInfo") {
        result.insert("_meta".into(), json!({SERVER_INFO_KEY: info}));
    }
    mark_uncacheable(&mut result);
    Value::Object(result)
}

/// Results the revision lets clients cache.
const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "resources/read",
];

/// Cache hints for a result that was decided for one caller: never shared,
/// stale at once (policy may change the next answer).
fn mark_uncacheable(result: &mut Map<String, Value>) {
    result.insert("ttlMs".into(), json!(0));
    result.insert("cacheScope".into(), json!("private"));
}

/// Ids for requests Warden sends into stateless sessions: unique in the
/// process, so concurrent requests that reuse an id never meet.
#[derive(Debug, Default)]
pub struct Ids(AtomicU64);

impl Ids {
    /// The next id.
    pub fn next(&self) -> Id {
        Id::own(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A modern request as the upstream session gets it: Warden's id for it,
/// and the modern envelope keys taken out of `_meta` (everything else, a
/// progress token included, stays).
pub fn to_session(parsed: &Parsed, ours: &Id, params: &Value) -> String {
    let mut meta = params.get("_meta").cloned().unwrap_or_else(|| json!({}));
    if let Some(object) = meta.as_object_mut() {
        for key in [VERSION_KEY, CAPABILITIES_KEY, INFO_KEY] {
            object.remove(key);
        }
    }
    let line = if meta.as_object().is_some_and(Map::is_empty) {
        parsed.with_param("_meta", None)
    } else {
        parsed.with_param("_meta", Some(&meta))
    };
    match jsonrpc::parse(&line) {
        Ok(reparsed) => reparsed.rewrite(Some(ours), None),
        Err(_) => line,
    }
}

/// What the client gets of a message the session addressed to it: the
/// answer with the client's own id (and `resultType`, and a private cache
/// scope on lists); notifications as they are. Requests from the server
/// have no way back on this revision and are dropped (`None`).
pub fn to_client(line: &str, client_id: &Id, method: &str) -> Option<String> {
    let parsed = jsonrpc::parse(line).ok()?;
    match &parsed.message {
        Message::Response {
            outcome: Ok(result),
            ..
        } => {
            let mut result = result.clone();
            if let Some(object) = result.as_object_mut() {
                object
                    .entry("resultType")
                    .or_insert_with(|| json!("complete"));
                if CACHEABLE.contains(&method) {
                    mark_uncacheable(object);
                }
            }
            Some(parsed.rewrite(Some(client_id), Some(&result)))
        }
        Message::Response { .. } => Some(parsed.rewrite(Some(client_id), None)),
        Message::Notification { .. } => Some(line.to_owned()),
        // LIMITATION: sampling, elicitation and roots requests of an
        // upstream have no channel back on the stateless revision; they
        // are dropped and the upstream's own timeout answers them.
        Message::Request { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn request(method: &str, params: Value) -> Message {
        let text = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        jsonrpc::parse(&text.to_string()).unwrap().message
    }

    fn meta() -> Value {
        json!({VERSION_KEY: MODERN_VERSION, CAPABILITIES_KEY: {}, INFO_KEY: {"name": "c", "version": "1"}})
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn good_headers(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("mcp-protocol-version", MODERN_VERSION.to_owned()),
            ("mcp-method", method.to_owned()),
        ];
        if let Some(name) = name {
            out.push(("mcp-name", name.to_owned()));
        }
        out
    }

    fn check_with(
        message: &Message,
        pairs: &[(&'static str, String)],
    ) -> Result<Envelope, Rejection> {
        let pairs: Vec<(&'static str, &str)> =
            pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check(message, &headers(&pairs))
    }

    #[test]
    fn a_well_formed_modern_request_passes_with_its_envelope() {
        let call = request("tools/call", json!({"name": "echo", "_meta": meta()}));
        assert!(is_modern(&call, &HeaderMap::new()));
        let envelope = check_with(&call, &good_headers("tools/call", Some("echo"))).unwrap();
        assert_eq!(envelope.version, MODERN_VERSION);
        assert_eq!(
            envelope.client_info,
            Some(json!({"name": "c", "version": "1"}))
        );
        let plain = request("tools/call", json!({"name": "echo"}));
        assert!(!is_modern(&plain, &HeaderMap::new()));
        // The header alone says the client means the stateless revision.
        let claimed = headers(&[("mcp-protocol-version", MODERN_VERSION)]);
        assert!(is_modern(&plain, &claimed));
        let err = check(&plain, &claimed).unwrap_err();
        assert_eq!(err.code, jsonrpc::INVALID_PARAMS);
    }

    #[test]
    fn envelopes_lacking_a_required_key_are_invalid_params() {
        for meta in [
            json!(null),
            json!("x"),
            json!({VERSION_KEY: MODERN_VERSION}),
            json!({CAPABILITIES_KEY: {}}),
        ] {
            let call = request("tools/list", json!({"_meta": meta}));
            let err = check_with(&call, &good_headers("tools/list", None)).unwrap_err();
            assert_eq!(err.code, jsonrpc::INVALID_PARAMS, "{meta}");
        }
    }

    #[test]
    fn headers_that_disagree_with_the_body_are_a_mismatch() {
        let call = request("tools/call", json!({"name": "echo", "_meta": meta()}));
        let cases: Vec<Vec<(&'static str, String)>> = vec![
            vec![
                ("mcp-method", "tools/call".into()),
                ("mcp-name", "echo".into()),
            ],
            good_headers("tools/list", Some("echo")),
            good_headers("tools/call", Some("delete_all")),
            good_headers("tools/call", None),
            good_headers("tools/call", Some("=?base64?ZGVsZXRl?=")),
            good_headers("tools/call", Some("=?base64?ZWNobw?=")),
            [
                good_headers("tools/call", Some("echo")),
                vec![("mcp-method", "tools/call".into())],
            ]
            .concat(),
            vec![
                ("mcp-protocol-version", "2025-11-25".into()),
                ("mcp-method", "tools/call".into()),
                ("mcp-name", "echo".into()),
            ],
        ];
        for pairs in cases {
            let err = check_with(&call, &pairs).unwrap_err();
            assert_eq!(err.code, HEADER_MISMATCH, "{pairs:?}");
        }
        // The canonical base64 form of the same name agrees.
        assert!(check_with(
            &call,
            &good_headers("tools/call", Some("=?base64?ZWNobw==?="))
        )
        .is_ok());
    }

    #[test]
    fn a_version_warden_does_not_speak_is_named_with_the_supported_one() {
        let mut old = meta();
        old[VERSION_KEY] = json!("2099-01-01");
        let call = request("tools/list", json!({"_meta": old}));
        let pairs = vec![
            ("mcp-protocol-version", "2099-01-01".to_owned()),
            ("mcp-method", "tools/list".to_owned()),
        ];
        let err = check_with(&call, &pairs).unwrap_err();
        assert_eq!(err.code, UNSUPPORTED_VERSION);
        assert_eq!(
            err.data,
            Some(json!({"supported": [MODERN_VERSION], "requested": "2099-01-01"}))
        );
    }

    #[test]
    fn requests_reach_the_session_with_warden_s_id_and_without_the_envelope() {
        let text = json!({"jsonrpc": "2.0", "id": "c-1", "method": "tools/call", "x": 1,
                          "params": {"name": "echo", "arguments": {"n": 1},
                                     "_meta": {VERSION_KEY: MODERN_VERSION, CAPABILITIES_KEY: {}, "progressToken": 7}}})
        .to_string();
        let parsed = jsonrpc::parse(&text).unwrap();
        let Message::Request { params, .. } = &parsed.message else {
            panic!()
        };
        let sent: Value = serde_json::from_str(&to_session(&parsed, &Id::own(41), params)).unwrap();
        assert_eq!(sent["id"], 41);
        assert_eq!(sent["params"]["_meta"], json!({"progressToken": 7}));
        assert_eq!(sent["params"]["arguments"], json!({"n": 1}));
        assert_eq!(sent["x"], 1);
    }

    #[test]
    fn answers_go_back_with_the_client_s_id_and_server_requests_do_not() {
        let client = jsonrpc::parse(r#"{"jsonrpc":"2.0","id":"c-1","method":"ping"}"#).unwrap();
        let Message::Request { id, .. } = client.message else {
            panic!()
        };
        let answer = to_client(
            r#"{"jsonrpc":"2.0","id":41,"result":{"tools":[]}}"#,
            &id,
            "tools/list",
        )
        .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["id"], "c-1");
        assert_eq!(answer["result"]["resultType"], "complete");
        assert_eq!(answer["result"]["cacheScope"], "private");
        assert_eq!(answer["result"]["ttlMs"], 0);
        let error = to_client(
            r#"{"jsonrpc":"2.0","id":41,"error":{"code":-32010,"message":"no"}}"#,
            &id,
            "tools/call",
        );
        assert!(error.unwrap().contains(r#""id":"c-1""#));
        assert!(to_client(
            r#"{"jsonrpc":"2.0","id":"s1","method":"roots/list"}"#,
            &id,
            "tools/call"
        )
        .is_none());
    }

    #[test]
    fn discover_answers_from_the_upstream_s_initialize_result() {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}},
                          "serverInfo": {"name": "up", "version": "1"}});
        let result = discover_result(&init);
        assert_eq!(result["supportedVersions"], json!([MODERN_VERSION]));
        assert_eq!(result["capabilities"], init["capabilities"]);
        assert_eq!(result["serverInfo"], init["serverInfo"]);
        assert_eq!(result["resultType"], "complete");
    }
}
