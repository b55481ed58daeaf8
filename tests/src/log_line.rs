//! [`LogLine`]: one line of the host's output, read as the tracing JSON
//! record it is (`--log-format json`).

use serde_json::Value;

/// One line the host wrote to stderr (or stdout), parsed when it is JSON.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// The line as written.
    pub raw: String,
    /// The line as JSON, when it is.
    pub json: Option<Value>,
}

impl LogLine {
    pub(crate) fn parse(raw: String) -> Self {
        let json = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(|v| v.is_object());
        LogLine { raw, json }
    }

    /// `fields.message`, when the line is a JSON log record.
    pub fn message(&self) -> Option<&str> {
        self.field("message").and_then(Value::as_str)
    }

    /// A field of the record: `fields.NAME`, else a top-level `NAME`, else the
    /// same in the record's spans (tracing-subscriber puts span fields there).
    pub fn field(&self, name: &str) -> Option<&Value> {
        let json = self.json.as_ref()?;
        json.get("fields")
            .and_then(|f| f.get(name))
            .or_else(|| json.get(name))
            .or_else(|| json.get("span").and_then(|s| s.get(name)))
            .or_else(|| {
                json.get("spans")
                    .and_then(Value::as_array)
                    .and_then(|spans| spans.iter().rev().find_map(|s| s.get(name)))
            })
    }

    /// A field as text: strings as they are, other values in JSON.
    pub fn field_str(&self, name: &str) -> Option<String> {
        self.field(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The record's level (`INFO`, `ERROR`, ...).
    pub fn level(&self) -> Option<&str> {
        self.json.as_ref()?.get("level")?.as_str()
    }

    /// Whether the line is the record `message` (and, when given, about `plugin`).
    pub fn is(&self, message: &str, plugin: Option<&str>) -> bool {
        self.message() == Some(message)
            && plugin.is_none_or(|p| self.field_str("plugin").as_deref() == Some(p))
    }
}
