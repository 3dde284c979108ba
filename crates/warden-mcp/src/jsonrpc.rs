//! JSON-RPC 2.0 framing as MCP uses it: strict parsing and classification
//! of one message, and the error responses Warden writes itself.
//!
//! This module owns the question "what is this message?" and answers it the
//! same way for every transport. It is deliberately strict: a message that
//! two parsers could read differently (duplicate keys, a `null` or
//! fractional id, a batch array) is refused here, before policy or the
//! upstream sees it.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// JSON-RPC: invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// Warden: too many requests of this client are awaiting an answer.
pub const TOO_MANY_IN_FLIGHT: i64 = -32014;
/// Warden: the upstream's answer was larger than the message size limit.
pub const UPSTREAM_TOO_LARGE: i64 = -32015;
/// JSON-RPC: the method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Warden: the request was denied by policy. `error.data` carries the
/// decision id, reason label, policy ids and policy-set version.
pub const DENIED: i64 = -32010;
/// Warden: the upstream did not answer within the call timeout.
pub const UPSTREAM_TIMEOUT: i64 = -32011;
/// Warden: the upstream server exited or could not be reached.
pub const UPSTREAM_UNAVAILABLE: i64 = -32012;
/// Warden: the decision record could not be written, so the request was
/// refused.
pub const RECORD_FAILED: i64 = -32013;

/// A request id, kept as the exact JSON token the client sent. Two ids are
/// the same when they name the same value (`"a"` and `"\u0061"` are one
/// id); an answer always carries the token exactly as it was sent.
#[derive(Debug, Clone)]
pub struct Id {
    raw: String,
    key: String,
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.key == other.key
    }
}

impl Eq for Id {}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl Id {
    /// The JSON token, as received (`"abc"`, `7`, `9007199254740993`).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The canonical form two equal ids share (`"a"` for both `"a"` and
    /// `"\u0061"`; integers as written).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// An id Warden mints for a request it sends upstream: a small
    /// integer, which every JSON parser reads exactly.
    pub fn own(n: u64) -> Id {
        Id {
            raw: n.to_string(),
            key: n.to_string(),
        }
    }

    /// The id a raw JSON token names, if it is a valid request id.
    pub fn from_raw(raw: &RawValue) -> Option<Id> {
        match Id::classify(raw) {
            IdToken::Valid(id) => Some(id),
            IdToken::Null | IdToken::Invalid => None,
        }
    }

    fn classify(raw: &RawValue) -> IdToken {
        let text = raw.get().trim();
        if text == "null" {
            return IdToken::Null;
        }
        if text.starts_with('"') {
            return match serde_json::from_str::<String>(text) {
                // The key is canonical, so `"a"` and `"\u0061"` are one id.
                Ok(s) => IdToken::Valid(Id {
                    raw: text.to_owned(),
                    key: Value::String(s).to_string(),
                }),
                Err(_) => IdToken::Invalid,
            };
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        let integral = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if integral {
            IdToken::Valid(Id {
                raw: text.to_owned(),
                key: text.to_owned(),
            })
        } else {
            IdToken::Invalid
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

enum IdToken {
    Valid(Id),
    Null,
    Invalid,
}

/// One message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: a method and a valid id.
    Request {
        /// The id token.
        id: Id,
        /// The method.
        method: String,
        /// The params (`Null` when absent).
        params: Value,
    },
    /// A notification: a method and no id.
    Notification {
        /// The method.
        method: String,
        /// The params (`Null` when absent).
        params: Value,
    },
    /// A response: an id and a result or an error.
    Response {
        /// The id token.
        id: Id,
        /// The result, or `Err` with the error object.
        outcome: Result<Value, Value>,
    },
}

/// Why a message was refused, and the id to answer with if one was valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The JSON-RPC error code to answer with.
    pub code: i64,
    /// What is wrong, one lowercase sentence.
    pub message: String,
    /// The request id, when the message had a valid one.
    pub id: Option<Id>,
    /// The method, when the message had one.
    pub method: Option<String>,
    /// A short stable label for the decision log.
    pub label: &'static str,
}

/// A parsed message with the raw top-level members, so that a relayed
/// message can be rewritten member by member without touching the rest.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The classification.
    pub message: Message,
    members: Vec<(String, Box<RawValue>)>,
}

impl Parsed {
    /// The raw token of `params.<key>`, for ids carried in params (a
    /// cancellation's `requestId`), read without a lossy round trip through
    /// numbers.
    pub fn params_member(&self, key: &str) -> Option<Box<RawValue>> {
        let params = self.members.iter().find(|(k, _)| k == "params")?;
        members(params.1.get())
            .ok()?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Re-serialises the message with `params.<key>` set to `value`
    /// (removed when `None`); every other member, and every other member of
    /// `params`, is kept as received. A message without an object `params`
    /// gets one.
    pub fn with_param(&self, key: &str, value: Option<&Value>) -> String {
        let params = self.members.iter().find(|(k, _)| k == "params");
        let mut inner: Vec<(String, String)> = params
            .and_then(|(_, raw)| members(raw.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, raw)| (k, raw.get().to_owned()))
            .collect();
        let position = inner.iter().position(|(k, _)| k == key);
        match (position, value) {
            (Some(index), Some(value)) => {
                if let Some(member) = inner.get_mut(index) {
                    member.1 = value.to_string();
                }
            }
            (Some(index), None) => {
                inner.remove(index);
            }
            (None, Some(value)) => inner.push((key.to_owned(), value.to_string())),
            (None, None) => {}
        }
        let params = object_text(inner.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut outer: Vec<(&str, &str)> = self
            .members
            .iter()
            .map(|(k, raw)| {
                (
                    k.as_str(),
                    if k == "params" {
                        params.as_str()
                    } else {
                        raw.get()
                    },
                )
            })
            .collect();
        if !outer.iter().any(|(k, _)| *k == "params") {
            outer.push(("params", params.as_str()));
        }
        object_text(outer.into_iter())
    }

    /// Re-serialises the message with `id` in place of its id and, when
    /// given, `result` in place of its result; every other member is kept
    /// as received.
    pub fn rewrite(&self, id: Option<&Id>, result: Option<&Value>) -> String {
        let result = result.map(Value::to_string);
        object_text(self.members.iter().map(|(key, raw)| {
            let text = match (key.as_str(), id, &result) {
                ("id", Some(id), _) => id.raw(),
                ("result", _, Some(result)) => result.as_str(),
                _ => raw.get(),
            };
            (key.as_str(), text)
        }))
    }
}

/// Parses and classifies one message.
pub fn parse(text: &str) -> Result<Parsed, Invalid> {
    let invalid = |code, message: &str, label| Invalid {
        code,
        message: message.to_owned(),
        id: None,
        method: None,
        label,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return Err(invalid(
            INVALID_REQUEST,
            "batch requests are not supported: send one message at a time",
            "batch",
        ));
    }
    if !trimmed.starts_with('{') {
        // Well-formed JSON of another shape is a request JSON-RPC cannot
        // read (-32600); anything else is not JSON at all (-32700).
        return Err(
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                invalid(
                    INVALID_REQUEST,
                    "message is not a JSON object",
                    "not_an_object",
                )
            } else {
                invalid(PARSE_ERROR, "message is not JSON", "parse_error")
            },
        );
    }
    let members: Vec<(String, Box<RawValue>)> = match members(text) {
        Ok(members) => members,
        Err(e) if e.contains("duplicate") => {
            return Err(invalid(INVALID_REQUEST, &e, "duplicate_key"));
        }
        Err(e) => {
            return Err(invalid(
                PARSE_ERROR,
                &format!("invalid JSON: {e}"),
                "parse_error",
            ))
        }
    };
    classify(members)
}

fn classify(members: Vec<(String, Box<RawValue>)>) -> Result<Parsed, Invalid> {
    let get = |key: &str| members.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let id = get("id").map(|raw| Id::classify(raw));
    let method = match get("method").map(|raw| serde_json::from_str::<String>(raw.get())) {
        None => None,
        Some(Ok(method)) => Some(method),
        Some(Err(_)) => {
            return Err(refusal(
                &id,
                None,
                "`method` must be a string",
                "invalid_method",
            ));
        }
    };
    let version_ok = get("jsonrpc").is_some_and(|raw| raw.get().trim() == "\"2.0\"");
    if !version_ok {
        return Err(refusal(
            &id,
            method,
            "`jsonrpc` must be \"2.0\"",
            "invalid_version",
        ));
    }
    match id {
        Some(IdToken::Null) => {
            return Err(refusal(
                &id,
                method,
                "request id must not be null",
                "null_id",
            ));
        }
        Some(IdToken::Invalid) => {
            return Err(refusal(
                &id,
                method,
                "request id must be a string or an integer",
                "invalid_id",
            ));
        }
        _ => {}
    }
    let id = match id {
        Some(IdToken::Valid(id)) => Some(id),
        _ => None,
    };
    // The id and method were readable, so a refusal of the body answers
    // under them: the client is not left waiting.
    let (known_id, known_method) = (id.clone(), method.clone());
    let value = |key: &str| -> Result<Option<Value>, Invalid> {
        get(key)
            .map(|raw| strict_value(raw.get()))
            .transpose()
            .map_err(|e| {
                let duplicate = e.contains("duplicate key");
                Invalid {
                    code: if duplicate {
                        INVALID_REQUEST
                    } else {
                        PARSE_ERROR
                    },
                    message: if duplicate {
                        format!("`{key}` is ambiguous: {e}")
                    } else {
                        format!("`{key}` cannot be read: {e}")
                    },
                    id: known_id.clone(),
                    method: known_method.clone(),
                    label: if duplicate {
                        "duplicate_key"
                    } else {
                        "parse_error"
                    },
                }
            })
    };
    let message = match (method, id) {
        (Some(method), Some(id)) => {
            if get("result").is_some() || get("error").is_some() {
                return Err(refusal_id(
                    Some(id),
                    Some(method),
                    "a request must not carry a result",
                ));
            }
            let params = value("params")?.unwrap_or(Value::Null);
            Message::Request { id, method, params }
        }
        (Some(method), None) => {
            let params = value("params")?.unwrap_or(Value::Null);
            Message::Notification { method, params }
        }
        (None, Some(id)) => match (value("result")?, value("error")?) {
            (Some(result), None) => Message::Response {
                id,
                outcome: Ok(result),
            },
            (None, Some(error)) => Message::Response {
                id,
                outcome: Err(error),
            },
            _ => {
                return Err(refusal_id(
                    Some(id),
                    None,
                    "a response must carry exactly one of `result` and `error`",
                ))
            }
        },
        (None, None) => {
            return Err(refusal_id(
                None,
                None,
                "message has neither `method` nor `id`",
            ));
        }
    };
    Ok(Parsed { message, members })
}

fn refusal(
    id: &Option<IdToken>,
    method: Option<String>,
    message: &str,
    label: &'static str,
) -> Invalid {
    let id = match id {
        Some(IdToken::Valid(id)) => Some(id.clone()),
        _ => None,
    };
    Invalid {
        code: INVALID_REQUEST,
        message: message.to_owned(),
        id,
        method,
        label,
    }
}

fn refusal_id(id: Option<Id>, method: Option<String>, message: &str) -> Invalid {
    Invalid {
        code: INVALID_REQUEST,
        message: message.to_owned(),
        id,
        method,
        label: "invalid_message",
    }
}

/// An error response with `id` (or `null`).
pub fn error_response(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = Map::new();
    error.insert("code".into(), Value::from(code));
    error.insert("message".into(), Value::from(message));
    if let Some(data) = data {
        error.insert("data".into(), data);
    }
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{}}}",
        id.map_or("null", Id::raw),
        Value::Object(error)
    )
}

/// A result response with `id`.
pub fn result_response(id: &Id, result: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{}}}",
        id.raw(),
        result
    )
}

/// A request Warden sends on its own account.
pub fn request(id: &Id, method: &str, params: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":{},\"params\":{}}}",
        id.raw(),
        Value::from(method),
        params
    )
}

/// A JSON object from member names and their JSON texts.
fn object_text<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (index, (key, raw)) in members.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.to_owned()).to_string());
        out.push(':');
        out.push_str(raw);
    }
    out.push('}');
    out
}

/// The top-level members of a JSON object, refusing duplicate keys.
fn members(text: &str) -> Result<Vec<(String, Box<RawValue>)>, String> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.iter().any(|(k, _)| *k == key) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
                out.push((key, map.next_value()?));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let out = de::Deserializer::deserialize_map(&mut de, Members).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Parses a JSON value, refusing duplicate keys at any depth: two parsers
/// that keep different duplicates would see different arguments.
pub fn strict_value(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictSeed.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, map.next_value_seed(StrictSeed)?);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(text: &str) -> Option<String> {
        match parse(text).map(|p| p.message) {
            Ok(Message::Request { id, .. }) | Ok(Message::Response { id, .. }) => {
                Some(id.raw().to_owned())
            }
            _ => None,
        }
    }

    #[test]
    fn ids_keep_their_exact_token() {
        assert_eq!(
            id_of(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).as_deref(),
            Some("1")
        );
        assert_eq!(
            id_of(r#"{"jsonrpc":"2.0","id":"1","method":"ping"}"#).as_deref(),
            Some("\"1\"")
        );
        assert_eq!(
            id_of(r#"{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}"#).as_deref(),
            Some("9007199254740993")
        );
        assert_eq!(
            id_of(r#"{"jsonrpc":"2.0","id":-5,"result":{}}"#).as_deref(),
            Some("-5")
        );
    }

    #[test]
    fn an_escaped_string_id_is_one_id_with_its_plain_form_but_keeps_its_bytes() {
        let escaped = parse(r#"{"jsonrpc":"2.0","id":"\u0061","method":"ping"}"#).unwrap();
        let plain = parse(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#).unwrap();
        let (Message::Request { id: e, .. }, Message::Request { id: p, .. }) =
            (escaped.message, plain.message)
        else {
            panic!("requests expected");
        };
        assert_eq!(e, p);
        assert_eq!(e.raw(), r#""\u0061""#);
    }

    #[test]
    fn refuses_null_fractional_boolean_and_object_ids() {
        for id in ["null", "1.5", "true", "{}", "[]", "1e3"] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#);
            let err = parse(&text).unwrap_err();
            assert_eq!(err.code, INVALID_REQUEST, "id {id}");
            assert_eq!(err.id, None, "id {id}");
        }
    }

    #[test]
    fn only_the_top_level_id_counts() {
        let text = r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"set","arguments":{"id":99}},"id":5}"#;
        assert_eq!(id_of(text).as_deref(), Some("5"));
    }

    #[test]
    fn with_param_replaces_one_member_and_keeps_every_other_byte() {
        let text = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs__read","arguments":{"n":9007199254740993,"x":1.10},"_meta":{"progressToken":"t"}},"extra":{"keep":true}}"#;
        let parsed = parse(text).unwrap();
        let renamed = parsed.with_param("name", Some(&Value::from("read")));
        assert_eq!(
            renamed,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read","arguments":{"n":9007199254740993,"x":1.10},"_meta":{"progressToken":"t"}},"extra":{"keep":true}}"#
        );
        let without = parse(text).unwrap().with_param("_meta", None);
        assert!(!without.contains("progressToken") && without.contains("9007199254740993"));
        let bare = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            bare.with_param("cursor", Some(&Value::from("c"))),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"c"}}"#
        );
        assert_eq!(
            bare.with_param("cursor", None),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#
        );
    }

    #[test]
    fn json_that_is_not_an_object_is_an_invalid_request_and_garbage_a_parse_error() {
        for text in ["\"ping\"", "42", "null", "true", " \"x\" "] {
            let err = parse(text).unwrap_err();
            assert_eq!(
                (err.code, err.label),
                (INVALID_REQUEST, "not_an_object"),
                "{text}"
            );
        }
        for text in ["ping", "", "\"unterminated", "42 43", "nul"] {
            let err = parse(text).unwrap_err();
            assert_eq!(
                (err.code, err.label),
                (PARSE_ERROR, "parse_error"),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_batches_and_duplicate_keys() {
        assert_eq!(
            parse(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
                .unwrap_err()
                .label,
            "batch"
        );
        assert_eq!(parse("[]").unwrap_err().label, "batch");
        let dup = r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#;
        assert_eq!(parse(dup).unwrap_err().label, "duplicate_key");
        let nested = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"path":"/ok","path":"/etc"}}}"#;
        let err = parse(nested).unwrap_err();
        assert_eq!((err.code, err.label), (INVALID_REQUEST, "duplicate_key"));
        assert_eq!(err.id.map(|i| i.raw().to_owned()).as_deref(), Some("1"));
    }

    #[test]
    fn refuses_garbage_with_a_parse_error() {
        for text in [
            "",
            "hello",
            "{",
            "{\"jsonrpc\":\"2.0\",",
            "\u{0}",
            "{\"a\":1} trailing",
            "{\"jsonrpc\":\"2.0\",\"id\":01,\"method\":\"ping\"}",
        ] {
            assert_eq!(parse(text).unwrap_err().code, PARSE_ERROR, "{text:?}");
        }
    }

    #[test]
    fn classifies_notifications_and_responses() {
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n.message, Message::Notification { .. }));
        let r = parse(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#).unwrap();
        assert!(matches!(
            r.message,
            Message::Response {
                outcome: Err(_),
                ..
            }
        ));
        let both = r#"{"jsonrpc":"2.0","id":"a","result":{},"error":{}}"#;
        assert_eq!(
            parse(both)
                .unwrap_err()
                .id
                .map(|i| i.raw().to_owned())
                .as_deref(),
            Some("\"a\"")
        );
    }

    #[test]
    fn rewrite_keeps_unknown_members_and_replaces_the_id() {
        let p = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"x-extra":{"k":[1,2]}}"#)
            .unwrap();
        let id = Id::own(3);
        let out: Value = serde_json::from_str(&p.rewrite(Some(&id), None)).unwrap();
        assert_eq!(out["id"], 3);
        assert_eq!(out["x-extra"]["k"][1], 2);
    }
}
