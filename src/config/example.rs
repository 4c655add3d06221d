//! `config/example.toml` against the raw shapes. The file is the third place every default is
//! written (after the code and the docs it feeds), so the tests here make it fail loudly when it
//! drifts: it must name every key the shapes accept, in the table they belong to, each under a
//! comment; every key it names, set or commented out, must exist and parse; and the values it
//! shows, or the "Default: X" its comments state, must be the defaults the code applies.
//! (That the file's active keys validate is checked on the binary, by `check-config`, in
//! tests/integration/cli.rs.)

use std::collections::{BTreeMap, BTreeSet};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::{RawConfig, connectors, encryption, entra, flow, keepalive, limits, log, server, store, tokens, webhooks};

const EXAMPLE: &str = include_str!("../../config/example.toml");

/// Keys without a default: a config must set them.
const REQUIRED: &[&str] = &[
    "server.listen",
    "server.public_url",
    "connectors.id",
    "connectors.display_name",
    "connectors.client_id",
];

/// Every table of the file (`[[array]]` tables by their name) and the keys its raw shape accepts.
fn tables() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("", fields_of::<RawConfig>()),
        ("server", fields_of::<server::RawServer>()),
        ("server.tls", fields_of::<server::RawTls>()),
        ("entra", fields_of::<entra::RawEntra>()),
        ("store", fields_of::<store::RawStore>()),
        ("encryption", fields_of::<encryption::RawEncryption>()),
        ("encryption.keys", fields_of::<encryption::RawEncryptionKey>()),
        ("flow", fields_of::<flow::RawFlow>()),
        ("log", fields_of::<log::RawLog>()),
        ("connectors", fields_of::<connectors::RawConnector>()),
        ("limits", fields_of::<limits::RawLimits>()),
        ("tokens", fields_of::<tokens::RawTokens>()),
        ("keepalive", fields_of::<keepalive::RawKeepalive>()),
        ("connectors.webhooks", fields_of::<webhooks::RawWebhook>()),
        ("webhooks", fields_of::<webhooks::RawWebhooks>()),
    ])
}

/// The field names a derived `Deserialize` accepts, which serde hands to `deserialize_struct`;
/// nothing is deserialised.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    assert!(!fields.is_empty(), "{} is not a struct", std::any::type_name::<T>());
    fields
}

/// A run of comment lines and the keys right under them, set or commented out.
#[derive(Debug)]
struct Entry {
    table: String,
    prose: Vec<String>,
    keys: Vec<String>,
}

/// `name` of a line `name = value` or `# name = value`.
fn key_of(line: &str) -> Option<&str> {
    let (name, _) = line.strip_prefix("# ").unwrap_or(line).split_once(" = ")?;
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    .then_some(name)
}

/// The file's entries, in order.
fn entries() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut table = String::new();
    let mut open = false;
    for line in EXAMPLE.lines().map(str::trim) {
        if line.is_empty() {
            open = false;
        } else if line.starts_with('[') {
            table = line.trim_matches(|c| c == '[' || c == ']').to_string();
            open = false;
        } else if let Some(key) = key_of(line) {
            if !open {
                out.push(Entry {
                    table: table.clone(),
                    prose: Vec::new(),
                    keys: Vec::new(),
                });
                open = true;
            }
            out.last_mut().expect("opened").keys.push(key.to_string());
        } else if let Some(comment) = line.strip_prefix('#') {
            if !open || !out.last().expect("opened").keys.is_empty() {
                out.push(Entry {
                    table: table.clone(),
                    prose: Vec::new(),
                    keys: Vec::new(),
                });
                open = true;
            }
            out.last_mut().expect("opened").prose.push(comment.trim().to_string());
        } else {
            panic!("config/example.toml: a line that is no key, comment or table: {line:?}");
        }
    }
    out
}

/// The file with every commented-out key set, as text.
fn uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|line| match (line.strip_prefix("# "), key_of(line)) {
            (Some(set), Some(_)) => set,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value at `table.key` of a parsed file, `[[array]]` tables read from their first element.
fn lookup<'a>(root: &'a toml::Table, table: &str, key: &str) -> Option<&'a toml::Value> {
    let mut at = root;
    for part in table.split('.').filter(|p| !p.is_empty()) {
        at = match at.get(part)? {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => items.first()?.as_table()?,
            _ => return None,
        };
    }
    at.get(key)
}

/// The defaults the code applies, as TOML: a config of only the required keys, read and
/// written back. Keys that are unset by default are absent.
fn code_defaults() -> toml::Table {
    let minimal = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://broker.example.com"
[[connectors]]
id = "c"
display_name = "C"
client_id = "00000000-0000-0000-0000-000000000000"
"#;
    let raw: RawConfig = Figment::new()
        .merge(Toml::string(minimal))
        .extract()
        .expect("only the required keys");
    match toml::Value::try_from(&raw).expect("raw shapes serialise") {
        toml::Value::Table(t) => t,
        other => panic!("not a table: {other}"),
    }
}

/// The "Default: X" a comment states, without the full stop ending its sentence.
fn stated_default(prose: &[String]) -> Option<String> {
    let text = prose.join(" ");
    let (_, rest) = text.split_once("Default: ")?;
    let word = rest.split_whitespace().next()?;
    Some(word.trim_end_matches(['.', ',', ';']).to_string())
}

/// `value` as a comment would state it: TOML, or a string without its quotes.
fn states(word: &str, value: &toml::Value) -> bool {
    word == value.to_string() || value.as_str() == Some(word)
}

#[test]
fn example_names_every_key_under_a_comment_and_only_real_ones() {
    let tables = tables();
    let entries = entries();
    let mut problems = Vec::new();

    let mut named: BTreeSet<(String, String)> = BTreeSet::new();
    for entry in &entries {
        let Some(accepted) = tables.get(entry.table.as_str()) else {
            problems.push(format!("[{}] is no table the config reads", entry.table));
            continue;
        };
        if !entry.keys.is_empty() && entry.prose.is_empty() {
            problems.push(format!("[{}] {} has no comment", entry.table, entry.keys.join(", ")));
        }
        for key in &entry.keys {
            if !accepted.contains(&key.as_str()) {
                problems.push(format!("[{}] {key} is no key of that table", entry.table));
            }
            if !named.insert((entry.table.clone(), key.clone())) {
                problems.push(format!("[{}] {key} appears twice", entry.table));
            }
        }
    }
    // A field is named either as a key or as a table of its own (`[server.tls]`).
    for (table, fields) in &tables {
        for field in *fields {
            let nested = if table.is_empty() {
                field.to_string()
            } else {
                format!("{table}.{field}")
            };
            let as_table = entries.iter().any(|e| e.table == nested);
            if as_table && !tables.contains_key(nested.as_str()) {
                problems.push(format!("[{nested}] has no raw shape listed in example.rs's tables()"));
            }
            if !as_table && !named.contains(&(table.to_string(), field.to_string())) {
                problems.push(format!("[{table}] {field} is not in config/example.toml"));
            }
        }
    }
    assert!(problems.is_empty(), "config/example.toml:\n{}", problems.join("\n"));
}

#[test]
fn example_parses_with_every_commented_key_set() {
    // The raw shape only, not validation: a secret and a certificate together are no config.
    Figment::new()
        .merge(Toml::string(&uncommented()))
        .extract::<RawConfig>()
        .unwrap_or_else(|e| panic!("config/example.toml with its commented keys set: {e}"));
}

#[test]
fn example_values_and_stated_defaults_are_the_code_defaults() {
    let defaults = code_defaults();
    let example: toml::Table = toml::from_str(&uncommented()).expect("parses");
    let mut problems = Vec::new();
    let mut compared = 0;
    for entry in entries() {
        // "Default: X" speaks of the entry's one key; several keys share prose that says more.
        let stated = (entry.keys.len() == 1).then(|| stated_default(&entry.prose)).flatten();
        for key in &entry.keys {
            let path = format!("{}.{key}", entry.table);
            let default = if REQUIRED.contains(&path.as_str()) {
                None
            } else {
                lookup(&defaults, &entry.table, key)
                    // An empty list is as unset as a missing value: the file shows an example.
                    .filter(|v| v.as_array().is_none_or(|a| !a.is_empty()))
            };
            let shown = lookup(&example, &entry.table, key).expect("every entry's key parses");
            match (default, stated.as_deref()) {
                (None, Some(word)) if word != "unset" => {
                    problems.push(format!("{path}: states Default: {word}, but the code has no default"));
                }
                (None, _) => {}
                (Some(default), Some(word)) if !states(word, default) => {
                    problems.push(format!("{path}: states Default: {word}, the code's is {default}"));
                }
                (Some(default), stated) if shown != default && stated.is_none() => {
                    problems.push(format!(
                        "{path}: shows {shown}, the code's default is {default} (show it, or state \"Default: {default}\")"
                    ));
                }
                (Some(_), _) => compared += 1,
            }
        }
    }
    assert!(problems.is_empty(), "config/example.toml:\n{}", problems.join("\n"));
    assert!(
        compared > 40,
        "only {compared} defaults compared: is the file read right?"
    );
}
