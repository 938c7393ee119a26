//! How a log entry looks to an application (pull, WebSocket, group inspection):
//! rendered straight from the entry, without building a JSON tree per message. A
//! JSON payload is embedded as it is (checked, not parsed into values).

use crate::groups::Leased;
use crate::names::{Channel, GroupName};
use base64::Engine;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::time::Duration;

/// A pull's answer.
#[derive(Serialize)]
pub struct Pulled<'a> {
    /// The group pulled from.
    pub group: &'a GroupName,
    /// The messages leased.
    pub messages: Vec<Rendered<'a>>,
}

/// Header pairs, rendered as a JSON object.
pub struct Headers(Vec<(String, String)>);

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One message as an application sees it.
#[derive(Serialize)]
pub struct Rendered<'a> {
    id: &'a str,
    channel: &'a Channel,
    sender: &'a str,
    offset: u64,
    created_at: String,
    headers: Headers,
    content_type: &'a str,
    deliveries: u32,
    /// JSON payloads as they are, other UTF-8 payloads as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    /// Payloads that are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

/// A payload that can travel as JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// Renders a leased log entry.
pub fn render<'a>(channel: &'a Channel, l: &'a Leased) -> Rendered<'a> {
    let e = &l.entry;
    let headers = if e.headers == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(&e.headers).unwrap_or_default()
    };
    let created = std::time::UNIX_EPOCH + Duration::from_millis(e.created_at.max(0) as u64);
    let json = e
        .content_type
        .starts_with("application/json")
        .then(|| serde_json::from_slice::<&RawValue>(&e.payload).ok())
        .flatten();
    let (data, data_base64) = match json {
        Some(raw) => (Some(Data::Json(raw)), None),
        None => match std::str::from_utf8(&e.payload) {
            Ok(text) => (Some(Data::Text(text)), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&e.payload)),
            ),
        },
    };
    Rendered {
        id: &e.id,
        channel,
        sender: &e.sender,
        offset: e.offset,
        created_at: humantime::format_rfc3339_millis(created).to_string(),
        headers: Headers(headers),
        content_type: &e.content_type,
        deliveries: l.deliveries,
        data,
        data_base64,
    }
}

/// Renders a leased log entry as a JSON value (for answers that embed it).
pub fn message_json(channel: &Channel, l: &Leased) -> Value {
    serde_json::to_value(render(channel, l)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::groups::LogEntry;

    fn leased(content_type: &str, payload: &[u8], headers: &str) -> Leased {
        Leased {
            entry: LogEntry {
                offset: 7,
                id: "m1".into(),
                sender: "alice".into(),
                created_at: 0,
                received_at: 0,
                expires_at: 0,
                content_type: content_type.into(),
                headers: headers.into(),
                payload: payload.to_vec(),
            },
            deliveries: 2,
            until: std::time::Instant::now(),
        }
    }

    #[test]
    fn given_payload_kinds_then_json_is_embedded_text_is_a_string_and_binary_is_base64() {
        let ch = Channel::new("chat".to_string()).unwrap();
        let l = leased("application/json", br#"{"a":[1,2]}"#, r#"[["k","v"]]"#);
        let v = message_json(&ch, &l);
        assert_eq!(v["data"], serde_json::json!({"a": [1, 2]}));
        assert_eq!(v["headers"], serde_json::json!({"k": "v"}));
        assert_eq!(v["offset"], 7);
        assert_eq!(v["deliveries"], 2);
        assert_eq!(v["channel"], "chat");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        // Declared JSON that is not JSON is shown as text.
        let v = message_json(&ch, &leased("application/json", b"{nope", "[]"));
        assert_eq!(v["data"], "{nope");
        let v = message_json(&ch, &leased("text/plain", b"hi", "[]"));
        assert_eq!(v["data"], "hi");
        assert!(v.get("data_base64").is_none());
        let v = message_json(&ch, &leased("application/octet-stream", &[0xff, 0], "[]"));
        assert_eq!(v["data_base64"], "/wA=");
        assert!(v.get("data").is_none());
    }
}
