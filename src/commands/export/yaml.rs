//! A small YAML writer for the Kubernetes export: maps, lists, scalars and comments, in block
//! style, always written the same way for the same input. Every string is double-quoted the
//! JSON way (valid YAML), so none is ever read as a number, a boolean, a date or null; a key is
//! quoted the same way unless it is a plain word YAML reads as a string.

/// A value: a scalar, a map or a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(u64),
    Bool(bool),
    Map(Map),
    List(Vec<Node>),
}

/// A map's entries in the order given, each with the comment lines written above it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<(Vec<String>, String, Node)>,
    /// Comment lines for the next entry added.
    pending: Vec<String>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    /// This map with `key: value` added.
    pub fn with(mut self, key: &str, value: impl Into<Node>) -> Map {
        self.push(key, value);
        self
    }

    /// This map with `key: value` added when `value` is some.
    pub fn with_some(self, key: &str, value: Option<impl Into<Node>>) -> Map {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    /// This map with a comment written above the next entry (each line of `text` its own line).
    pub fn comment(mut self, text: &str) -> Map {
        self.pending.extend(text.lines().map(str::to_string));
        self
    }

    pub fn push(&mut self, key: &str, value: impl Into<Node>) {
        let comments = std::mem::take(&mut self.pending);
        self.entries.push((comments, key.to_string(), value.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl From<&str> for Node {
    fn from(text: &str) -> Node {
        Node::Str(text.to_string())
    }
}

impl From<String> for Node {
    fn from(text: String) -> Node {
        Node::Str(text)
    }
}

impl From<u64> for Node {
    fn from(number: u64) -> Node {
        Node::Int(number)
    }
}

impl From<bool> for Node {
    fn from(value: bool) -> Node {
        Node::Bool(value)
    }
}

impl From<Map> for Node {
    fn from(map: Map) -> Node {
        Node::Map(map)
    }
}

impl<T: Into<Node>> From<Vec<T>> for Node {
    fn from(items: Vec<T>) -> Node {
        Node::List(items.into_iter().map(Into::into).collect())
    }
}

/// One YAML document: `comments` as `#` lines, then `root`.
pub fn document(comments: &[String], root: &Map) -> String {
    let mut out = String::new();
    for line in comments.iter().flat_map(|text| text.lines()) {
        out.push_str(&comment_line(0, line));
    }
    write_map(&mut out, root, 0);
    out
}

fn comment_line(indent: usize, text: &str) -> String {
    match text.is_empty() {
        true => format!("{:indent$}#\n", ""),
        false => format!("{:indent$}# {text}\n", ""),
    }
}

fn write_map(out: &mut String, map: &Map, indent: usize) {
    for (comments, key, value) in &map.entries {
        for line in comments {
            out.push_str(&comment_line(indent, line));
        }
        let key = quoted_key(key);
        match value {
            Node::Map(inner) if !inner.is_empty() => {
                out.push_str(&format!("{:indent$}{key}:\n", ""));
                write_map(out, inner, indent + 2);
            }
            Node::List(items) if !items.is_empty() => {
                out.push_str(&format!("{:indent$}{key}:\n", ""));
                write_list(out, items, indent + 2);
            }
            scalar => out.push_str(&format!("{:indent$}{key}: {}\n", "", inline(scalar))),
        }
    }
    for line in &map.pending {
        out.push_str(&comment_line(indent, line));
    }
}

/// Each item as `- `, a map's or a list's first line on the dash's line.
fn write_list(out: &mut String, items: &[Node], indent: usize) {
    for item in items {
        let mut block = String::new();
        match item {
            Node::Map(map) if !map.is_empty() => write_map(&mut block, map, indent + 2),
            Node::List(list) if !list.is_empty() => write_list(&mut block, list, indent + 2),
            scalar => {
                out.push_str(&format!("{:indent$}- {}\n", "", inline(scalar)));
                continue;
            }
        }
        out.push_str(&format!("{:indent$}- {}", "", &block[indent + 2..]));
    }
}

/// A scalar, or an empty map or list, on one line.
fn inline(node: &Node) -> String {
    match node {
        Node::Str(text) => quoted(text),
        Node::Int(number) => number.to_string(),
        Node::Bool(value) => value.to_string(),
        Node::Map(_) => "{}".to_string(),
        Node::List(_) => "[]".to_string(),
    }
}

/// A string as a JSON string, which YAML reads as the same double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A key as it is when YAML reads it as that string (`app.kubernetes.io/name`), else quoted.
fn quoted_key(key: &str) -> String {
    let first_plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    let plain = key.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    // Words YAML 1.1 (older readers) takes for booleans or null.
    let special = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    match first_plain && plain && !special.contains(&key.to_ascii_lowercase().as_str()) {
        true => key.to_string(),
        false => quoted(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lists_and_comments_in_block_style() {
        let container = Map::new().with("name", "web").with("args", vec!["-c", "exec app"]);
        let root = Map::new()
            .with("apiVersion", "v1")
            .comment("two lines\nof comment")
            .with("replicas", 2u64)
            .with("containers", vec![container])
            .with("empty", Map::new())
            .with("none", Vec::<Node>::new())
            .with("ok", true);
        let text = document(&["head".to_string()], &root);
        let expected = "\
# head
apiVersion: \"v1\"
# two lines
# of comment
replicas: 2
containers:
  - name: \"web\"
    args:
      - \"-c\"
      - \"exec app\"
empty: {}
none: []
ok: true
";
        assert_eq!(text, expected);
    }

    #[test]
    fn strings_are_always_quoted_and_keys_only_when_needed() {
        assert_eq!(inline(&"5000".into()), "\"5000\"");
        assert_eq!(inline(&"yes".into()), "\"yes\"");
        assert_eq!(inline(&"say \"hi\"\n\\ and: # not a comment".into()), r#""say \"hi\"\n\\ and: # not a comment""#);
        assert_eq!(quoted_key("app.kubernetes.io/name"), "app.kubernetes.io/name");
        assert_eq!(quoted_key("ON"), "\"ON\"");
        assert_eq!(quoted_key("1PASSWORD"), "\"1PASSWORD\"");
        assert_eq!(quoted_key("A KEY"), "\"A KEY\"");
    }

    #[test]
    fn a_list_of_lists_and_a_map_after_a_comment() {
        let root = Map::new().with("matrix", Node::List(vec![vec![1u64, 2].into()])).comment("trailing");
        assert_eq!(document(&[], &root), "matrix:\n  - - 1\n    - 2\n# trailing\n");
    }
}
