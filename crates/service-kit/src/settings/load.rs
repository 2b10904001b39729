//! Layering: built-in defaults < the settings file < the environment < flags, merged by the
//! `config` crate into the service's settings struct, then checked.
//!
//! One rule names everything: the file key `window.seconds` is the environment variable
//! `INGEST_WINDOW_SECONDS` and the flag `--window-seconds`. The defaults, serialized, are the
//! schema: a file key that is not one of them is refused with its dotted name, and so is a
//! variable with the service's prefix that names no setting (a typo is never silently
//! ignored); each value from the environment or a flag is typed like its default.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use config::{Config, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::{Field, Setting, SettingsError, command, join_key};

/// How one binary names itself and its settings outside the file.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// The binary's name, as in messages (`ingest`).
    pub name: &'static str,
    /// Environment prefix without the underscore (`INGEST`).
    pub env_prefix: &'static str,
    /// One paragraph for `--help`.
    pub about: &'static str,
    /// Environment names besides the generated ones, as `(name, key)`; the generated name wins
    /// when both are set. `MQTT_BROKER`, `MQTT_PORT` and `GATEWAY_LISTEN` are the names the
    /// original service and its compose files used.
    pub env_aliases: &'static [(&'static str, &'static str)],
}

/// One setting that has an environment name and a flag (every value; not a list of tables).
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    /// Dotted file key.
    pub key: String,
    /// The flag without `--`.
    pub flag: String,
    /// The generated environment name.
    pub env: String,
    /// Its documentation and limits.
    pub field: Field,
    /// The built-in default.
    pub default: Json,
}

impl Binary {
    /// The settings of this process (its arguments and environment). `--help`, `--version`
    /// and `--example-config` print and exit 0; a bad setting prints one line and exits 2.
    pub fn settings<T: Setting + Serialize + DeserializeOwned + Default>(&self) -> T {
        self.load(std::env::args_os(), std::env::vars())
            .unwrap_or_else(|e| e.exit(self.name))
    }

    /// Layers defaults < file (`--config`, or `<PREFIX>_CONFIG`) < `env` < the flags in
    /// `args` (the first item is the program name), and checks every limit.
    ///
    /// # Errors
    /// The first problem, as one line; [`SettingsError::Shown`] for `--help` and the like.
    pub fn load<T: Setting + Serialize + DeserializeOwned + Default>(
        &self,
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<T, SettingsError> {
        let defaults = T::default();
        let schema = serde_json::to_value(&defaults)
            .map_err(|e| SettingsError::Load(config::ConfigError::Message(e.to_string())))?;
        let fields = T::fields();
        let leaves = self.leaves(&fields, &schema);
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let parsed = command::parse(self, &leaves, &schema, &fields, args)?;
        self.check_variables(&leaves, &env)?;

        let mut builder = Config::builder().add_source(Config::try_from(&defaults)?);
        let config_var = format!("{}_CONFIG", self.env_prefix);
        let file = parsed.config.or_else(|| {
            env.get(&config_var)
                .filter(|p| !p.is_empty())
                .map(Into::into)
        });
        if let Some(path) = file {
            let table = read_file(&path, &with_elements(schema, &fields))?;
            builder = builder.add_source(Config::try_from(&table)?);
        }
        let by_key = |key: &str| leaves.iter().find(|l| l.key == key);
        let aliases = self.env_aliases.iter().map(|(n, k)| (*n, *k));
        let generated = leaves.iter().map(|l| (l.env.as_str(), l.key.as_str()));
        for (name, key) in aliases.chain(generated) {
            if let (Some(text), Some(leaf)) = (env.get(name), by_key(key)) {
                builder = builder.set_override(key, typed_like(text, &leaf.default))?;
            }
        }
        for (key, value) in parsed.flags {
            builder = builder.set_override(key, value)?;
        }
        let settings: T = builder.build()?.try_deserialize()?;
        settings.check("")?;
        Ok(settings)
    }

    /// The example settings file: every key with its doc, limits, names and default, as
    /// `--example-config` prints it.
    pub fn example<T: Setting + Serialize + Default>(&self) -> String {
        let defaults = serde_json::to_value(T::default()).unwrap_or(Json::Null);
        super::example::render(self, &T::fields(), &defaults)
    }

    /// Every value setting with its names, depth first in declaration order.
    pub(super) fn leaves(&self, fields: &[Field], defaults: &Json) -> Vec<Leaf> {
        let mut out = Vec::new();
        self.collect_leaves(fields, defaults, "", &mut out);
        out
    }

    fn collect_leaves(&self, fields: &[Field], defaults: &Json, prefix: &str, out: &mut Vec<Leaf>) {
        for field in fields {
            let key = join_key(prefix, field.name);
            let default = defaults.get(field.name).cloned().unwrap_or(Json::Null);
            if !field.fields.is_empty() {
                self.collect_leaves(&field.fields, &default, &key, out);
            } else if field.element.is_none() {
                out.push(Leaf {
                    flag: field
                        .flag
                        .map_or_else(|| key.replace(['.', '_'], "-"), str::to_owned),
                    env: format!("{}_{}", self.env_prefix, key.replace('.', "_")).to_uppercase(),
                    key,
                    field: field.clone(),
                    default,
                });
            }
        }
    }

    /// One sentence showing the naming rule on one of this binary's own settings.
    pub(super) fn naming_rule(&self, leaves: &[Leaf]) -> String {
        let dotted = |l: &&Leaf| l.key.contains('.') && l.field.flag.is_none();
        let example = leaves
            .iter()
            .filter(dotted)
            .find(|l| !l.key.starts_with("mqtt."))
            .or_else(|| leaves.iter().find(dotted));
        match example {
            Some(leaf) => format!(
                "Every setting is a key of the settings file, an environment variable and a \
                 flag: the key `{}` is {} and --{}.",
                leaf.key, leaf.env, leaf.flag
            ),
            None => String::new(),
        }
    }

    /// Refuses a variable with this binary's prefix that names no setting.
    fn check_variables(
        &self,
        leaves: &[Leaf],
        env: &BTreeMap<String, String>,
    ) -> Result<(), SettingsError> {
        let prefix = format!("{}_", self.env_prefix);
        let known: Vec<&str> = leaves
            .iter()
            .map(|l| l.env.as_str())
            .chain(self.env_aliases.iter().map(|(name, _)| *name))
            .collect();
        let config_var = format!("{prefix}CONFIG");
        for (name, value) in env.range(prefix.clone()..) {
            if !name.starts_with(&prefix) {
                break;
            }
            if known.contains(&name.as_str()) || *name == config_var || service_link(name, value) {
                continue;
            }
            let hint = closest(name, known.iter().copied())
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            return Err(SettingsError::UnknownVariable {
                name: name.clone(),
                hint,
            });
        }
        Ok(())
    }
}

/// The variables Kubernetes gives every container for each service of its namespace
/// (`INGEST_SERVICE_HOST`, `INGEST_PORT=tcp://...`, `INGEST_PORT_9100_TCP_ADDR`, ...): a
/// service named like the binary must not stop it from starting.
fn service_link(name: &str, value: &str) -> bool {
    let tail = |marker: &str| name.rsplit_once(marker).map(|(_, rest)| rest);
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || (name.ends_with("_PORT") && value.contains("://"))
        || tail("_PORT_").is_some_and(|rest| {
            rest.split('_')
                .next()
                .is_some_and(|port| port.parse::<u16>().is_ok())
                && ["TCP", "UDP", "SCTP"].iter().any(|p| rest.contains(p))
        })
}

/// The file as JSON, every key checked against `schema`.
fn read_file(path: &Path, schema: &Json) -> Result<Json, SettingsError> {
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
    let json = serde_json::to_value(&table).map_err(|e| file_error(e.to_string()))?;
    if let Some((key, known)) = first_unknown(&json, schema, "") {
        let (table, last) = key.rsplit_once('.').unwrap_or(("", &key));
        let hint = closest(last, known.iter().map(String::as_str))
            .map(|k| format!("; did you mean `{}`?", join_key(table, k)))
            .unwrap_or_default();
        return Err(SettingsError::UnknownKey {
            path: path.to_path_buf(),
            key,
            hint,
        });
    }
    Ok(json)
}

/// The first key of `given` (depth first, dotted) that `schema` lacks, with the keys its
/// table knows. Tables in a list (`[[alarm]]`) are checked against the list's default
/// element, and named with their position (`alarm[2].clear_belw`).
fn first_unknown(given: &Json, schema: &Json, prefix: &str) -> Option<(String, Vec<String>)> {
    match (given, schema) {
        (Json::Object(given), Json::Object(known)) => given.iter().find_map(|(k, v)| {
            let key = join_key(prefix, k);
            match known.get(k) {
                None => Some((key, known.keys().cloned().collect())),
                Some(default) => first_unknown(v, default, &key),
            }
        }),
        (Json::Array(items), Json::Array(_)) => {
            let element = element_schema(schema)?;
            items.iter().enumerate().find_map(|(n, item)| {
                first_unknown(item, &element, &format!("{prefix}[{}]", n + 1))
            })
        }
        _ => None,
    }
}

/// The default element a list of tables was given in the schema ([`with_elements`]).
fn element_schema(schema: &Json) -> Option<Json> {
    schema.as_array()?.first().cloned()
}

/// The defaults as a schema of the file: each list of tables holds one element with every key
/// its tables may have ([`Setting::element`]).
fn with_elements(mut schema: Json, fields: &[Field]) -> Json {
    for field in fields {
        let Some(node) = schema.get_mut(field.name) else {
            continue;
        };
        if let Some(element) = &field.element {
            *node = Json::Array(vec![element.clone()]);
        } else if !field.fields.is_empty() {
            *node = with_elements(node.take(), &field.fields);
        }
    }
    schema
}

/// The known name nearest to `name`, if it is a near miss: at most two edits, or a third of
/// the name for long names (`window_secs`).
fn closest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (name.len() / 3).max(2);
    known
        .map(|k| (edit_distance(k, name), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (keys and variable names are ASCII).
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

/// A value from the environment or a flag, typed like the setting's default: a number or a
/// boolean when the default is one and the text parses as one, a list for a list (comma
/// separated, blanks dropped), else the text itself (a wrong type is then reported with the
/// key).
pub(super) fn typed_like(text: &str, like: &Json) -> Value {
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
            .map_or_else(|_| text.into(), Value::from),
        Json::Number(n) if n.is_f64() => text
            .parse::<f64>()
            .map_or_else(|_| text.into(), Value::from),
        Json::Number(_) => text
            .parse::<i64>()
            .map_or_else(|_| text.into(), Value::from),
        _ => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    crate::settings! {
        /// A section for the tests.
        pub struct Inner {
            /// Host.
            host: String = "localhost".into();
            /// Port.
            port: u16 = 1883, in 1..=65_535;
            /// User.
            user: Option<String> = None;
        }
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Rule {
        pub machine: String,
        pub above: Option<f64>,
    }

    crate::settings! {
        /// Settings for the tests.
        pub struct Demo {
            /// The broker.
            mqtt: Inner = Inner::default();
            /// Window length.
            window_seconds: u64 = 60, in 1..=86_400;
            /// A ratio.
            ratio: f64 = 0.5;
            /// Say more.
            verbose: bool = false;
            /// Origins.
            origins: Vec<String> = Vec::new();
            /// Where to listen.
            listen: String = "0.0.0.0:1".into(), flag "listen-on";
            /// Rules, file only.
            rule: Vec<Rule> = Vec::new();
        }
    }

    const DEMO: Binary = Binary {
        name: "demo",
        env_prefix: "DEMO",
        about: "A demo.",
        env_aliases: &[("MQTT_BROKER", "mqtt.host")],
    };

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, SettingsError> {
        let args = std::iter::once("demo").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        DEMO.load(args, env)
    }

    #[test]
    fn defaults_file_env_flags_in_that_order() {
        let f = file("window_seconds = 30\nratio = 0.25\n[mqtt]\nhost = \"file\"\nport = 1000\n");
        let path = f.path().to_str().unwrap();
        let demo = load(&["--config", path], &[]).unwrap();
        assert_eq!((demo.mqtt.host.as_str(), demo.mqtt.port), ("file", 1000));
        assert_eq!((demo.window_seconds, demo.ratio), (30, 0.25));

        let env = [
            ("DEMO_CONFIG", path),
            ("DEMO_MQTT_PORT", "2000"),
            ("MQTT_BROKER", "env"),
            ("DEMO_VERBOSE", "true"),
            ("DEMO_ORIGINS", "a, b,,c"),
        ];
        let demo = load(&[], &env).unwrap();
        assert_eq!((demo.mqtt.host.as_str(), demo.mqtt.port), ("env", 2000));
        assert!(demo.verbose);
        assert_eq!(demo.origins, ["a", "b", "c"]);
        assert_eq!(demo.window_seconds, 30, "the file named by DEMO_CONFIG");

        let demo = load(
            &["--mqtt-port", "3000", "--verbose=false", "--listen-on", "x"],
            &env,
        )
        .unwrap();
        assert_eq!(demo.mqtt.port, 3000, "flag over env");
        assert!(!demo.verbose);
        assert_eq!(demo.listen, "x");
        let demo = load(&["--verbose"], &[]).unwrap();
        assert!(demo.verbose, "a boolean flag alone means true");
    }

    #[test]
    fn the_generated_name_wins_over_an_alias() {
        let env = [("MQTT_BROKER", "shared"), ("DEMO_MQTT_HOST", "own")];
        assert_eq!(load(&[], &env).unwrap().mqtt.host, "own");
    }

    #[test]
    fn unknown_keys_and_variables_are_named_with_a_suggestion() {
        let f = file("[mqtt]\nhots = \"x\"\n");
        let err = load(&["--config", f.path().to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting `mqtt.hots`"), "{err}");
        assert!(err.contains("did you mean `mqtt.host`?"), "{err}");
        let f = file("[[rule]]\nmachine = \"A1\"\nabvoe = 3\n");
        let err = load(&["--config", f.path().to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`rule[1].abvoe`") && err.contains("`rule[1].above`"),
            "{err}"
        );
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let err = load(&[], &[("DEMO_WINDOW_SECOND", "30")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable DEMO_WINDOW_SECOND names no setting; did you mean DEMO_WINDOW_SECONDS?"
        );
        let err = load(&[], &[("DEMO_COLOUR", "red")])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("DEMO_COLOUR names no setting"), "{err}");
        let k8s = [
            ("DEMO_PORT", "tcp://10.0.0.1:9100"),
            ("DEMO_SERVICE_HOST", "10.0.0.1"),
            ("DEMO_SERVICE_PORT_HTTP", "9100"),
            ("DEMO_PORT_9100_TCP_ADDR", "10.0.0.1"),
            ("OTHER_THING", "x"),
        ];
        assert!(
            load(&[], &k8s).is_ok(),
            "service links and other prefixes pass"
        );
    }

    #[test]
    fn wrong_types_and_limits_name_the_key() {
        let err = load(&[], &[("DEMO_WINDOW_SECONDS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`window_seconds`"), "{err}");
        let err = load(&["--window-seconds", "-5"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`window_seconds`") && err.contains("-5"),
            "{err}"
        );
        let err = load(&["--window-seconds", "0"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be 1 to 86400, not 0"), "{err}");
        let f = file("[[rule]]\nmachine = \"A1\"\nabove = \"x\"\n");
        let err = load(&["--config", f.path().to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`rule[1].above`"), "{err}");
    }

    #[test]
    fn file_errors_are_one_line_with_the_line_number() {
        let f = file("window_seconds = 30\nmqtt = [oops\n");
        let err = load(&["--config", f.path().to_str().unwrap()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && !err.contains('\n'), "{err}");
        let err = load(&["--config", "/nonexistent/settings.toml"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("settings file /nonexistent/settings.toml: "),
            "{err}"
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("max_clients", "max_clientz"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("host", "hots"), 2);
    }
}
