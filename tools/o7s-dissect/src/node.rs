//! A decoded frame as a tree of layers, printed as indented text or as JSON.

use serde::Serialize;
use serde_json::Value;

/// One protocol layer (or part of one) and its fields.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Node {
    /// Layer name, e.g. `eth-dix`.
    pub layer: String,
    /// Named fields, in wire order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, Value)>,
    /// Why this part could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A remark (e.g. that an interpretation is a guess).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The layers inside this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    /// A node for `layer`.
    pub fn new(layer: impl Into<String>) -> Self {
        Self {
            layer: layer.into(),
            ..Self::default()
        }
    }
    /// Adds a field.
    pub fn f(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.fields.push((k.to_string(), v.into()));
        self
    }
    /// Adds a field in place.
    pub fn push(&mut self, k: &str, v: impl Into<Value>) {
        self.fields.push((k.to_string(), v.into()));
    }
    /// Adds a child.
    pub fn child(mut self, c: Node) -> Self {
        self.children.push(c);
        self
    }
    /// Marks the node malformed.
    pub fn err(mut self, e: impl ToString) -> Self {
        self.error = Some(e.to_string());
        self
    }
    /// Adds a note.
    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.note = Some(n.into());
        self
    }
    /// Whether this node or a child is malformed.
    pub fn has_error(&self) -> bool {
        self.error.is_some() || self.children.iter().any(Node::has_error)
    }

    /// Renders as indented text, one line per layer.
    pub fn render(&self, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        let mut line = format!("{pad}{}", self.layer);
        for (k, v) in &self.fields {
            let v = match v {
                // Strings from the wire (certificate names, layer names) may hold
                // anything: control characters are shown escaped, never sent to the
                // terminal.
                Value::String(s) if s.chars().any(char::is_control) => s
                    .chars()
                    .flat_map(|c| {
                        let e: Vec<char> = if c.is_control() {
                            c.escape_default().collect()
                        } else {
                            vec![c]
                        };
                        e
                    })
                    .collect(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            line.push_str(&format!(" {k} {v}"));
        }
        if let Some(n) = &self.note {
            line.push_str(&format!(" [{n}]"));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" [MALFORMED: {e}]"));
        }
        out.push_str(&line);
        out.push('\n');
        for c in &self.children {
            c.render(depth + 1, out);
        }
    }

    /// The node as a JSON object with fields as a map.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("layer".into(), Value::String(self.layer.clone()));
        let fields: serde_json::Map<String, Value> = self.fields.iter().cloned().collect();
        if !fields.is_empty() {
            m.insert("fields".into(), Value::Object(fields));
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), Value::String(e.clone()));
        }
        if let Some(n) = &self.note {
            m.insert("note".into(), Value::String(n.clone()));
        }
        if !self.children.is_empty() {
            m.insert(
                "children".into(),
                Value::Array(self.children.iter().map(Node::to_json).collect()),
            );
        }
        Value::Object(m)
    }
}

/// `0x0040`-style hex of a number with `width` digits.
pub fn hexn(v: u64, width: usize) -> String {
    format!("0x{v:0width$x}")
}

/// Hex of bytes, shortened to `max` bytes with a `...` marker.
pub fn hexs(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        hex::encode(b)
    } else {
        format!("{}...", hex::encode(b.get(..max).unwrap_or(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_the_wire_are_rendered_with_their_control_characters_escaped() {
        let mut out = String::new();
        Node::new("oap")
            .f("subject", "CN=a\u{1b}]0;pwned\u{7}b")
            .f("layer", "plain")
            .render(0, &mut out);
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(out.contains("CN=a\\u{1b}]0;pwned\\u{7}b"), "{out}");
        assert!(out.contains("layer plain"), "{out}");
    }
}
