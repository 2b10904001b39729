//! The one way every binary layers its settings: built-in defaults < TOML file (`--config`) <
//! environment < flags, merged by the `config` crate into the binary's raw `Settings`.
//!
//! What a binary declares is data, not code ([`Layers`]): its environment prefix, the older
//! spellings it still accepts, and its flags as `(key, value)` pairs. The rest is the same
//! for all three:
//!
//! - The defaults are the binary's `Settings::default()`, serialized. They double as the
//!   schema: a file key that is not one of them is refused with its full dotted name (a typo
//!   must not be silently ignored), and each value from the environment is typed like its
//!   default (a number, a boolean, a comma-separated list).
//! - Every key `a.b` is read from the environment as `<PREFIX>_A_B` and `<PREFIX>_A__B`, then
//!   from the binary's further names (`MQTT_BROKER`, `GATEWAY_LISTEN`, ...); a later name wins.
//! - The file is read once; an unreadable or broken file is reported once, with the line.

use std::path::Path;

use config::{Config, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::SettingsError;

/// How one binary names its settings outside the file's own keys.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// Environment prefix without the underscore: `INGEST`, `GATEWAY` or `SIMULATOR`.
    pub env_prefix: &'a str,
    /// Older file keys still accepted, as `(old, new)` dotted keys, e.g.
    /// `("mqtt_host", "mqtt.host")`. Giving both spellings in one file is an error.
    pub file_aliases: &'a [(&'a str, &'a str)],
    /// Environment names besides the generated `<PREFIX>_<KEY>`, as `(name, key)`; they are
    /// applied in order after the generated ones, so a later name wins.
    pub env_aliases: &'a [(&'a str, &'a str)],
}

/// A flag's value as an override: `None` when the flag was not given.
pub type Flag<'a> = (&'a str, Option<Value>);

impl Layers<'_> {
    /// Layers `defaults` < the TOML file at `file` < the environment seen through `env` <
    /// `flags`, and deserializes the result. `env` is a parameter so tests need not touch the
    /// process environment.
    ///
    /// # Errors
    /// [`SettingsError::File`] for an unreadable or broken file, [`SettingsError::UnknownKey`]
    /// for a key no setting has, [`SettingsError::Type`] for a value of the wrong type.
    pub fn load<T: Serialize + DeserializeOwned>(
        &self,
        defaults: &T,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: impl IntoIterator<Item = Flag<'static>>,
    ) -> Result<T, SettingsError> {
        let schema = serde_json::to_value(defaults)
            .map_err(|e| SettingsError::Load(config::ConfigError::Message(e.to_string())))?;
        let mut builder = Config::builder().add_source(Config::try_from(defaults)?);
        if let Some(path) = file {
            let table = self.read_file(path, &schema)?;
            builder = builder.add_source(Config::try_from(&table)?);
        }
        for (name, key) in self.env_names(&schema) {
            if let Some(text) = env(&name) {
                let like = lookup(&schema, &key).unwrap_or(&Json::Null);
                builder = builder.set_override(key, typed_like(&text, like))?;
            }
        }
        for (key, value) in flags {
            if let Some(value) = value {
                builder = builder.set_override(key, value)?;
            }
        }
        Ok(builder.build()?.try_deserialize()?)
    }

    /// The file as JSON, with old spellings moved to their new keys and every key checked
    /// against `schema`.
    fn read_file(&self, path: &Path, schema: &Json) -> Result<Json, SettingsError> {
        let file_error = |message: String| SettingsError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let message = e.message().trim().replace('\n', " ");
            file_error(match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            })
        })?;
        let mut json = serde_json::to_value(&table).map_err(|e| file_error(e.to_string()))?;
        for (old, new) in self.file_aliases {
            if let Some(value) = take(&mut json, old) {
                if lookup(&json, new).is_some() {
                    return Err(SettingsError::invalid(
                        *new,
                        format!("is also set as `{old}` (its old spelling); keep one"),
                    ));
                }
                insert(&mut json, new, value);
            }
        }
        if let Some(key) = first_unknown(&json, schema, "") {
            let hint = closest_key(&key, schema)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key,
                hint,
            });
        }
        Ok(json)
    }

    /// `(environment name, key)` in the order they apply: the generated names of every key,
    /// then the binary's own names.
    fn env_names(&self, schema: &Json) -> Vec<(String, String)> {
        let mut names = Vec::new();
        for key in leaf_keys(schema, "") {
            let upper = key.to_ascii_uppercase();
            names.push((
                format!("{}_{}", self.env_prefix, upper.replace('.', "_")),
                key.clone(),
            ));
            if key.contains('.') {
                names.push((
                    format!("{}_{}", self.env_prefix, upper.replace('.', "__")),
                    key,
                ));
            }
        }
        names.extend(
            self.env_aliases
                .iter()
                .map(|(name, key)| ((*name).to_owned(), (*key).to_owned())),
        );
        names
    }
}

/// Every key of `schema` whose value is not a table, dotted (`mqtt.host`).
fn leaf_keys(schema: &Json, prefix: &str) -> Vec<String> {
    match schema {
        Json::Object(map) => map
            .iter()
            .flat_map(|(k, v)| leaf_keys(v, &join(prefix, k)))
            .collect(),
        _ if prefix.is_empty() => Vec::new(),
        _ => vec![prefix.to_owned()],
    }
}

/// The first key of `given` (depth first, dotted) that `schema` lacks. Inside arrays nothing is
/// checked: their elements have no default to compare with.
fn first_unknown(given: &Json, schema: &Json, prefix: &str) -> Option<String> {
    let (Json::Object(given), Json::Object(known)) = (given, schema) else {
        return None;
    };
    given.iter().find_map(|(k, v)| match known.get(k) {
        None => Some(join(prefix, k)),
        Some(default) => first_unknown(v, default, &join(prefix, k)),
    })
}

/// The known key nearest to the unknown `key`'s last part in the same table, if it is a near
/// miss: at most two edits, or a third of the name for long names (`window_secs`).
fn closest_key(key: &str, schema: &Json) -> Option<String> {
    let (table, last) = key.rsplit_once('.').unwrap_or(("", key));
    let known = if table.is_empty() {
        schema
    } else {
        lookup(schema, table)?
    };
    let Json::Object(map) = known else {
        return None;
    };
    let limit = (last.len() / 3).max(2);
    map.keys()
        .map(|k| (edit_distance(k, last), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| join(table, k))
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn lookup<'j>(json: &'j Json, key: &str) -> Option<&'j Json> {
    key.split('.').try_fold(json, |node, part| node.get(part))
}

fn take(json: &mut Json, key: &str) -> Option<Json> {
    let (table, last) = key.rsplit_once('.').unwrap_or(("", key));
    let node = if table.is_empty() {
        json
    } else {
        table
            .split('.')
            .try_fold(json, |node, part| node.get_mut(part))?
    };
    node.as_object_mut()?.remove(last)
}

fn insert(json: &mut Json, key: &str, value: Json) {
    let mut node = json;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let Json::Object(map) = node else { return };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(serde_json::Map::new()));
    }
}

/// An environment value typed like the setting's default: an integer, a float or a boolean
/// when the default is one and the text parses as one, a list for a list (comma separated,
/// blanks dropped), else the text itself (a wrong type is then reported with the key).
fn typed_like(text: &str, like: &Json) -> Value {
    let text = text.trim();
    match like {
        Json::Array(_) => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        Json::Bool(_) => text
            .parse::<bool>()
            .map_or_else(|_| Value::from(text), Value::from),
        Json::Number(n) if n.is_f64() => text
            .parse::<f64>()
            .map_or_else(|_| Value::from(text), Value::from),
        Json::Number(_) => text
            .parse::<i64>()
            .map_or_else(|_| Value::from(text), Value::from),
        _ => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Inner {
        host: String,
        port: u16,
        user: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Demo {
        mqtt: Inner,
        window_seconds: u64,
        ratio: f64,
        verbose: bool,
        origins: Vec<String>,
    }

    impl Default for Inner {
        fn default() -> Self {
            Self {
                host: "localhost".into(),
                port: 1883,
                user: None,
            }
        }
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                mqtt: Inner::default(),
                window_seconds: 60,
                ratio: 0.5,
                verbose: false,
                origins: Vec::new(),
            }
        }
    }

    const LAYERS: Layers<'static> = Layers {
        env_prefix: "DEMO",
        file_aliases: &[("mqtt_host", "mqtt.host"), ("user", "mqtt.user")],
        env_aliases: &[("MQTT_BROKER", "mqtt.host"), ("DEMO_USER", "mqtt.user")],
    };

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn load(
        file: Option<&Path>,
        env: &[(&str, &str)],
        flags: Vec<Flag<'static>>,
    ) -> Result<Demo, SettingsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LAYERS.load(
            &Demo::default(),
            file,
            &|name| env.get(name).cloned(),
            flags,
        )
    }

    #[test]
    fn defaults_file_env_flags_in_that_order() {
        let f = file("window_seconds = 30\nratio = 0.25\n[mqtt]\nhost = \"file\"\nport = 1000\n");
        let demo = load(Some(f.path()), &[], vec![]).unwrap();
        assert_eq!((demo.mqtt.host.as_str(), demo.mqtt.port), ("file", 1000));
        assert_eq!((demo.window_seconds, demo.ratio), (30, 0.25));

        let env = [
            ("DEMO_MQTT_PORT", "2000"),
            ("MQTT_BROKER", "env"),
            ("DEMO_VERBOSE", "true"),
            ("DEMO_ORIGINS", "a, b,,c"),
            ("DEMO_RATIO", "0.75"),
        ];
        let demo = load(Some(f.path()), &env, vec![]).unwrap();
        assert_eq!((demo.mqtt.host.as_str(), demo.mqtt.port), ("env", 2000));
        assert!(demo.verbose);
        assert_eq!(demo.origins, ["a", "b", "c"]);
        assert_eq!(demo.ratio, 0.75);

        let flags = vec![
            ("mqtt.port", Some(Value::from(3000_i64))),
            ("window_seconds", None),
        ];
        let demo = load(Some(f.path()), &env, flags).unwrap();
        assert_eq!(demo.mqtt.port, 3000, "flag over env");
        assert_eq!(
            demo.window_seconds, 30,
            "an absent flag leaves the file's value"
        );
    }

    #[test]
    fn nested_keys_take_one_or_two_underscores_and_later_names_win() {
        let demo = load(None, &[("DEMO_MQTT__USER", "u2")], vec![]).unwrap();
        assert_eq!(demo.mqtt.user.as_deref(), Some("u2"));
        let env = [("DEMO_MQTT_USER", "new"), ("DEMO_USER", "old")];
        let demo = load(None, &env, vec![]).unwrap();
        assert_eq!(demo.mqtt.user.as_deref(), Some("old"), "aliases apply last");
    }

    #[test]
    fn old_file_spellings_are_moved_and_both_at_once_refused() {
        let f = file("mqtt_host = \"old\"\nuser = \"u\"\n");
        let demo = load(Some(f.path()), &[], vec![]).unwrap();
        assert_eq!(demo.mqtt.host, "old");
        assert_eq!(demo.mqtt.user.as_deref(), Some("u"));
        let f = file("mqtt_host = \"old\"\n[mqtt]\nhost = \"new\"\n");
        let err = load(Some(f.path()), &[], vec![]).unwrap_err().to_string();
        assert!(
            err.contains("`mqtt.host`") && err.contains("`mqtt_host`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let f = file("[mqtt]\nhots = \"x\"\n");
        let err = load(Some(f.path()), &[], vec![]).unwrap_err().to_string();
        assert!(err.contains("unknown setting `mqtt.hots`"), "{err}");
        assert!(err.contains("did you mean `mqtt.host`?"), "{err}");
        let f = file("colour = \"red\"\n");
        let err = load(Some(f.path()), &[], vec![]).unwrap_err().to_string();
        assert!(err.ends_with("unknown setting `colour`"), "{err}");
    }

    #[test]
    fn file_errors_are_one_line_with_the_line_number() {
        let f = file("window_seconds = 30\nmqtt = [oops\n");
        let err = load(Some(f.path()), &[], vec![]).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let missing = Path::new("/nonexistent/settings.toml");
        let err = load(Some(missing), &[], vec![]).unwrap_err().to_string();
        assert!(
            err.starts_with("settings file /nonexistent/settings.toml: "),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = load(None, &[("DEMO_WINDOW_SECONDS", "soon")], vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`window_seconds`"), "{err}");
        let flags = vec![("window_seconds", Some(Value::from(-5_i64)))];
        let err = load(None, &[], flags).unwrap_err().to_string();
        assert!(
            err.contains("`window_seconds`") && err.contains("-5"),
            "{err}"
        );
        let f = file("[mqtt]\nport = 70000\n");
        let err = load(Some(f.path()), &[], vec![]).unwrap_err().to_string();
        assert!(err.contains("`mqtt.port`"), "{err}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("max_clients", "max_clientz"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("host", "hots"), 2);
    }
}
