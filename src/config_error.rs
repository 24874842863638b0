//! Located config errors: `file:line:column: key `dotted.key`: message`. A leaf: it uses nothing
//! of the crate, so a collector can say where in its own section a value is refused (`Nonsense`
//! at a path) and `config` turns that into a `ConfigError` against the file's text.

use std::fmt;

/// A value that parses but cannot be meant: where it is and why it is refused.
#[derive(Debug)]
pub struct Nonsense {
    pub path: Vec<Step>,
    pub message: String,
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// `at(&["plan", "host_memory"])`: turns a message into a `Nonsense` at that key.
pub fn at(keys: &[&str]) -> impl FnOnce(String) -> Nonsense {
    let path = keys.iter().map(|k| Step::Key(k.to_string())).collect();
    move |message| Nonsense { path, message }
}

/// A config problem, located: `file:line:column: key: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn from_toml(file: &str, text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start);
        let (line, column) = line_and_column(text, offset);
        ConfigError {
            file: file.to_string(),
            line,
            column,
            key: key_at(text, line),
            message: error.message().trim().to_string(),
        }
    }

    /// Locates a value refused after parsing: the key is the path up to any array index, the
    /// line and column those of the value itself.
    pub fn at_path(file: &str, text: &str, nonsense: Nonsense) -> ConfigError {
        let (line, column) =
            span_of(text, &nonsense.path).map_or((0, 0), |offset| line_and_column(text, offset));
        let key: Vec<&str> = nonsense
            .path
            .iter()
            .map_while(|step| match step {
                Step::Key(key) => Some(key.as_str()),
                Step::Index(_) => None,
            })
            .collect();
        ConfigError {
            file: file.to_string(),
            line,
            column,
            key: key.join("."),
            message: nonsense.message,
        }
    }

    pub fn at_table(file: &str, text: &str, table: &str, message: &str) -> ConfigError {
        let header = format!("[{table}]");
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&header))
            .map_or(0, |i| i + 1);
        ConfigError {
            file: file.to_string(),
            line,
            column: 1,
            key: table.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The offset of the value at `path` in `text`, or of the deepest step of it that is there.
fn span_of(text: &str, path: &[Step]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut array = None;
    let mut offset = None;
    for step in path {
        let value = match step {
            Step::Key(key) => table.get(key.as_str()),
            Step::Index(index) => array.and_then(|a: &toml::de::DeArray| a.get(*index)),
        };
        let Some(value) = value else { break };
        offset = Some(value.span().start);
        let inner = value.get_ref();
        if let Some(t) = inner.as_table() {
            table = t;
        }
        array = inner.as_array();
    }
    offset
}

/// The dotted key at `line` (1-based): the nearest `[table]` header above it and the nearest
/// `key =` at or above it within that table (an inline table in a multi-line array has its key
/// lines above).
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().take(line).map(str::trim).collect();
    let mut key = None;
    for current in lines.iter().rev() {
        if current.starts_with('[') {
            let table = current.trim_matches(|c| c == '[' || c == ']').trim();
            return match key {
                Some(key) => format!("{table}.{key}"),
                None => table.to_string(),
            };
        }
        if key.is_none() {
            key = bare_key(current);
        }
    }
    key.unwrap_or_default().to_string()
}

/// `name` of a `name = value` line.
fn bare_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    is_key.then_some(key)
}
