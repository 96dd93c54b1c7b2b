//! One output, two forms: text for a person, or JSON Lines records (`{"record": kind,
//! ...}`) for a program. Every command that has `--json` writes through [`Report`], so
//! both forms carry the same facts.

use std::io::Write;

use serde_json::Value;

/// Where records go, and in which form.
pub struct Report<'a> {
    out: &'a mut dyn Write,
    json: bool,
}

impl<'a> Report<'a> {
    /// Records to `out`, as JSON Lines when `json`.
    pub fn new(out: &'a mut dyn Write, json: bool) -> Self {
        Self { out, json }
    }

    /// The form is JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// One record: `fields` (an object) in JSON form, `text` lines otherwise.
    pub fn record(&mut self, kind: &str, fields: Value, text: &[String]) -> std::io::Result<()> {
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("record".into(), Value::String(kind.into()));
            if let Value::Object(m) = fields {
                obj.extend(m);
            } else {
                obj.insert("value".into(), fields);
            }
            writeln!(self.out, "{}", Value::Object(obj))
        } else {
            for line in text {
                writeln!(self.out, "{line}")?;
            }
            Ok(())
        }
    }

    /// Text only (headings, blank lines); nothing in JSON form.
    pub fn text(&mut self, line: &str) -> std::io::Result<()> {
        if self.json {
            Ok(())
        } else {
            writeln!(self.out, "{line}")
        }
    }
}

/// "yes" or "no", for text reports.
pub fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
