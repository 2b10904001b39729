//! Layering: defaults < the settings file < the environment < flags, merged by the `config`
//! crate into the service's settings struct, then checked. The defaults, serialized, are the
//! schema: a file key or a variable with the service's prefix that names no setting is refused
//! (a typo is never silently ignored), and a value from the environment or a flag is typed
//! like its default.

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
    /// The binary's name (`ingest`).
    pub name: &'static str,
    /// Environment prefix without the underscore (`INGEST`).
    pub env_prefix: &'static str,
    /// One paragraph for `--help`.
    pub about: &'static str,
    /// Further environment names, as `(name, key)`; the generated name wins over them.
    pub env_aliases: &'static [(&'static str, &'static str)],
}

/// A value setting with its names (every field but sections and lists of tables).
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    pub key: String,
    pub flag: String,
    /// The generated variable, then the aliases.
    pub env: Vec<String>,
    pub field: Field,
    pub default: Json,
}

impl Binary {
    /// The settings of this process. `--help`, `--version` and `--example-config` print and
    /// exit 0; a bad setting prints one line and exits 2.
    pub fn settings<T: Setting + Serialize + DeserializeOwned + Default>(&self) -> T {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        self.load(std::env::args_os(), env)
            .unwrap_or_else(|e| e.exit(self.name))
    }

    /// Layers defaults < file (`--config`, or `<PREFIX>_CONFIG`) < `env` < the flags in `args`
    /// (program name first), and checks every limit.
    ///
    /// # Errors
    /// The first problem; [`SettingsError::Shown`] for `--help` and the like.
    pub fn load<T: Setting + Serialize + DeserializeOwned + Default>(
        &self,
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<T, SettingsError> {
        let defaults = T::default();
        let (fields, schema) = (T::fields(), to_json(&defaults));
        let leaves = self.leaves(&fields, &schema, "");
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let parsed = command::parse(self, &leaves, &fields, args)?;
        self.check_variables(&leaves, &env)?;
        let mut builder = Config::builder().add_source(Config::try_from(&defaults)?);
        let config_var = format!("{}_CONFIG", self.env_prefix);
        let from_env = env
            .get(&config_var)
            .filter(|p| !p.is_empty())
            .map(Into::into);
        if let Some(path) = parsed.config.or(from_env) {
            let table = read_file(&path, &with_elements(schema, &fields))?;
            builder = builder.add_source(Config::try_from(&table)?);
        }
        for leaf in &leaves {
            // The generated name first: it wins over an alias.
            if let Some(text) = leaf.env.iter().find_map(|name| env.get(name)) {
                builder = builder.set_override(&leaf.key, typed_like(text, &leaf.default))?;
            }
        }
        for (key, text) in parsed.flags {
            let leaf = leaves.iter().find(|l| l.key == key);
            let value = typed_like(&text, leaf.map_or(&Json::Null, |l| &l.default));
            builder = builder.set_override(key, value)?;
        }
        let settings: T = builder.build()?.try_deserialize()?;
        settings.check("")?;
        Ok(settings)
    }

    /// The example settings file, as `--example-config` prints it.
    pub fn example<T: Setting + Serialize + Default>(&self) -> String {
        let (fields, schema) = (T::fields(), to_json(&T::default()));
        command::example(self, &self.leaves(&fields, &schema, ""), &fields)
    }

    /// Every value setting below `prefix`, depth first in declaration order.
    pub(super) fn leaves(&self, fields: &[Field], defaults: &Json, prefix: &str) -> Vec<Leaf> {
        let mut out = Vec::new();
        for field in fields.iter().filter(|f| f.element.is_none()) {
            let key = join_key(prefix, field.name);
            let default = defaults.get(field.name).cloned().unwrap_or(Json::Null);
            if !field.fields.is_empty() {
                out.extend(self.leaves(&field.fields, &default, &key));
                continue;
            }
            let mut env =
                vec![format!("{}_{}", self.env_prefix, key.replace('.', "_")).to_uppercase()];
            let aliases = self.env_aliases.iter().filter(|(_, k)| *k == key);
            env.extend(aliases.map(|(name, _)| (*name).to_owned()));
            let flag = field
                .flag
                .map_or_else(|| key.replace(['.', '_'], "-"), str::to_owned);
            out.push(Leaf {
                key,
                flag,
                env,
                field: field.clone(),
                default,
            });
        }
        out
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
            .flat_map(|l| l.env.iter().map(String::as_str))
            .collect();
        let unknown = env.iter().find(|(name, value)| {
            name.starts_with(&prefix)
                && !known.contains(&name.as_str())
                && **name != format!("{prefix}CONFIG")
                && !service_link(name, value)
        });
        match unknown {
            None => Ok(()),
            Some((name, _)) => Err(SettingsError::UnknownVariable {
                name: name.clone(),
                hint: closest(name, known.iter().copied())
                    .map_or_else(String::new, |k| format!("; did you mean {k}?")),
            }),
        }
    }
}

fn to_json(value: &impl Serialize) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// The variables Kubernetes sets for each service of a namespace (`INGEST_SERVICE_HOST`,
/// `INGEST_PORT=tcp://...`, `INGEST_PORT_9100_TCP_ADDR`): a service named like the binary must
/// not stop it from starting.
fn service_link(name: &str, value: &str) -> bool {
    let port_tail = name
        .rsplit_once("_PORT_")
        .map(|(_, tail)| tail.split('_').collect::<Vec<_>>());
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || (name.ends_with("_PORT") && value.contains("://"))
        || port_tail.is_some_and(|t| {
            t.len() >= 2 && t[0].parse::<u16>().is_ok() && ["TCP", "UDP", "SCTP"].contains(&t[1])
        })
}

/// The file as JSON, every key checked against `schema`.
fn read_file(path: &Path, schema: &Json) -> Result<Json, SettingsError> {
    let error = |message: String| SettingsError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let message = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => error(format!(
                "line {}: {message}",
                text[..span.start].lines().count().max(1)
            )),
            None => error(message),
        }
    })?;
    let json = to_json(&table);
    if let Some((key, known)) = first_unknown(&json, schema, "") {
        let (table, last) = key.rsplit_once('.').unwrap_or(("", &key));
        let hint = closest(last, known.iter().map(String::as_str)).map_or_else(String::new, |k| {
            format!("; did you mean `{}`?", join_key(table, k))
        });
        return Err(SettingsError::UnknownKey {
            path: path.to_path_buf(),
            key,
            hint,
        });
    }
    Ok(json)
}

/// The first key of `given` (dotted) that `schema` lacks, with the keys its table knows. A
/// list of tables is checked against its one schema element, its tables named by their
/// position from 1 (`alarm[2].clear_belw`).
fn first_unknown(given: &Json, schema: &Json, prefix: &str) -> Option<(String, Vec<String>)> {
    match (given, schema) {
        (Json::Object(given), Json::Object(known)) => {
            given.iter().find_map(|(k, v)| match known.get(k) {
                None => Some((join_key(prefix, k), known.keys().cloned().collect())),
                Some(default) => first_unknown(v, default, &join_key(prefix, k)),
            })
        }
        (Json::Array(items), Json::Array(element)) => {
            items.iter().enumerate().find_map(|(n, item)| {
                first_unknown(item, element.first()?, &format!("{prefix}[{}]", n + 1))
            })
        }
        _ => None,
    }
}

/// The defaults as the file's schema: each list of tables holds its one element.
fn with_elements(mut schema: Json, fields: &[Field]) -> Json {
    for field in fields {
        if let Some(node) = schema.get_mut(field.name) {
            *node = match &field.element {
                Some(element) => Json::Array(vec![element.clone()]),
                None => with_elements(node.take(), &field.fields),
            };
        }
    }
    schema
}

/// The known name nearest to `name` if it is a near miss: at most two edits, or a third of a
/// long name.
fn closest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (name.len() / 3).max(2);
    let distance = |k: &str| {
        // Levenshtein over bytes (names are ASCII), one row at a time.
        let mut row: Vec<usize> = (0..=name.len()).collect();
        for (i, a) in k.bytes().enumerate() {
            let mut diagonal = std::mem::replace(&mut row[0], i + 1);
            for (j, b) in name.bytes().enumerate() {
                let next = (diagonal + usize::from(a != b))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                diagonal = std::mem::replace(&mut row[j + 1], next);
            }
        }
        row[name.len()]
    };
    known
        .map(|k| (distance(k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// A value from the environment or a flag, typed like the default: a number or boolean when
/// the text is one, a list for a list (comma separated), else the text (a wrong type is then
/// reported with the key).
fn typed_like(text: &str, like: &Json) -> Value {
    let text = text.trim();
    match like {
        Json::Array(_) => {
            let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
            Value::from(items.map(str::to_owned).collect::<Vec<_>>())
        }
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

    /// A table of a list, as `[[alarm]]`.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Rule {
        /// A machine.
        pub machine: String,
        /// A threshold.
        pub above: Option<f64>,
    }

    crate::settings! {
        /// Settings for the tests.
        pub struct Demo {
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
            /// The broker.
            mqtt: Inner = Inner::default();
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
        let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, SettingsError> {
        let args = std::iter::once("demo").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        DEMO.load(args, env)
    }

    fn with_file(text: &str) -> String {
        let f = file(text);
        let err = load(&["--config", f.path().to_str().unwrap()], &[]).unwrap_err();
        err.to_string()
            .replace(&f.path().display().to_string(), "FILE")
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

        let args = [
            "--mqtt-port",
            "3000",
            "--verbose",
            "false",
            "--listen-on",
            "x",
        ];
        let demo = load(&args, &env).unwrap();
        assert_eq!(demo.mqtt.port, 3000, "flag over env");
        assert!(!demo.verbose);
        assert_eq!(demo.listen, "x");
        assert!(
            load(&["--verbose"], &[]).unwrap().verbose,
            "a boolean flag alone is true"
        );
    }

    #[test]
    fn the_generated_name_wins_over_an_alias() {
        let env = [("MQTT_BROKER", "shared"), ("DEMO_MQTT_HOST", "own")];
        assert_eq!(load(&[], &env).unwrap().mqtt.host, "own");
    }

    #[test]
    fn unknown_keys_and_variables_are_named_with_a_suggestion() {
        let err = with_file("[mqtt]\nhots = \"x\"\n");
        assert_eq!(
            err,
            "settings file FILE: unknown setting `mqtt.hots`; did you mean `mqtt.host`?"
        );
        let err = with_file("[[rule]]\nmachine = \"A1\"\n[[rule]]\nabvoe = 3\n");
        assert_eq!(
            err,
            "settings file FILE: unknown setting `rule[2].abvoe`; did you mean `rule[2].above`?"
        );
        assert!(with_file("colour = 1\n").ends_with("unknown setting `colour`"));

        let err = load(&[], &[("DEMO_WINDOW_SECOND", "30")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable DEMO_WINDOW_SECOND names no setting; did you mean DEMO_WINDOW_SECONDS?"
        );
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
        assert!(
            load(&[], &[("DEMO_PORT", "9100")]).is_err(),
            "not a service link"
        );
    }

    #[test]
    fn wrong_types_and_limits_name_the_key() {
        let err = load(&[], &[("DEMO_WINDOW_SECONDS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`window_seconds`") && err.contains("soon"),
            "{err}"
        );
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
        assert!(
            err.ends_with("`window_seconds`: must be 1 to 86400, not 0"),
            "{err}"
        );
        let err = with_file("[[rule]]\nmachine = \"A1\"\nabove = \"x\"\n");
        assert!(err.contains("`rule[1].above`"), "{err}");
        let err = load(&["--window-secs", "5"], &[]).unwrap_err().to_string();
        assert!(
            err.contains("--window-secs") && err.ends_with("(see --help)"),
            "{err}"
        );
    }

    #[test]
    fn file_errors_are_one_line_with_the_line_number() {
        let err = with_file("window_seconds = 30\nmqtt = [oops\n");
        assert!(
            err.starts_with("settings file FILE: line 2") && !err.contains('\n'),
            "{err}"
        );
        let err = load(&["--config", "/nonexistent/settings.toml"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("settings file /nonexistent/settings.toml: "),
            "{err}"
        );
    }

    #[test]
    fn help_and_the_example_show_every_setting_with_its_names_and_default() {
        let Err(SettingsError::Shown(help)) = load(&["--help"], &[]) else {
            panic!("no help")
        };
        assert!(help.contains("--window-seconds <NUMBER>"), "{help}");
        assert!(
            help.contains("[env: DEMO_MQTT_HOST, MQTT_BROKER] [default: localhost]"),
            "{help}"
        );
        assert!(
            help.contains("the key `mqtt.host` is DEMO_MQTT_HOST and --mqtt-host"),
            "{help}"
        );
        let example = DEMO.example::<Demo>();
        assert!(example.contains("# Allowed: 1 to 86400.\n# DEMO_WINDOW_SECONDS, --window-seconds\n#window_seconds = 60\n"), "{example}");
        assert!(example.contains("\n[mqtt]\n# The broker.\n"), "{example}");
        assert!(
            example.contains("# Not set by default.\n#user =\n"),
            "{example}"
        );
        assert!(
            example.trim_end().ends_with("# Rules, file only."),
            "lists of tables last: {example}"
        );
    }
}
