//! Layering: built-in defaults < the settings file < the environment < flags, merged as JSON
//! and deserialized into the service's settings struct by serde, which names the key of a bad
//! value. A file key or a variable with the service's prefix that names no declared setting
//! is refused (a typo is never silently ignored).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

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
}

/// A value setting with its names (every field but sections and lists of tables).
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    pub key: String,
    pub flag: String,
    /// The generated variable, then the field's further name.
    pub env: Vec<String>,
    /// What the flag's value is called; it also says how a text becomes a value.
    pub value_name: &'static str,
    pub field: Field,
    pub default: Json,
}

impl Binary {
    /// The settings of this process. `--help`, `--version` and `--example-config` print and
    /// exit 0; a bad setting prints one line and exits 2.
    pub fn settings<T: Setting + Serialize + DeserializeOwned + Default>(&self) -> T {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let loaded = self.load(std::env::args_os(), env);
        loaded.unwrap_or_else(|e| e.exit(self.name))
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
        let (fields, mut json) = (T::fields(), to_json(&T::default()));
        let leaves = self.leaves(&fields, &json, "");
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let flags = command::parse(self, &leaves, &fields, args)?;
        self.check_variables(&leaves, &env)?;
        let env_config = env.get(&format!("{}_CONFIG", self.env_prefix));
        let config = flags.get_one::<String>("config").or(env_config);
        if let Some(path) = config.filter(|p| !p.is_empty()) {
            merge(&mut json, read_file(Path::new(path), &fields)?);
        }
        for leaf in &leaves {
            // A flag, else the generated variable, else the further one.
            let from_env = || leaf.env.iter().find_map(|name| env.get(name));
            if let Some(text) = flags.get_one::<String>(&leaf.key).or_else(from_env) {
                merge_at(&mut json, &leaf.key, typed(text, leaf.value_name));
            }
        }
        let settings: T = serde_path_to_error::deserialize(json).map_err(|e| {
            let message = e.inner().to_string();
            SettingsError::invalid(readable_path(e.path()), message)
        })?;
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
            let generated = format!("{}_{}", self.env_prefix, key.replace('.', "_"));
            let env = [Some(generated.to_uppercase()), field.env.map(str::to_owned)];
            let flag = key.replace(['.', '_'], "-");
            out.push(Leaf {
                flag: field.flag.map_or(flag, str::to_owned),
                env: env.into_iter().flatten().collect(),
                value_name: command::value_name(field.ty),
                field: field.clone(),
                default,
                key,
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
        let config = format!("{prefix}CONFIG");
        let known: Vec<&String> = leaves.iter().flat_map(|l| &l.env).collect();
        let unknown = env.iter().find(|(name, value)| {
            let known = known.contains(name) || **name == config;
            name.starts_with(&prefix) && !known && !service_link(name, value)
        });
        let Some((name, _)) = unknown else {
            return Ok(());
        };
        let hint = did_you_mean(name, known.into_iter().map(String::as_str), str::to_owned);
        let name = name.clone();
        Err(SettingsError::UnknownVariable { name, hint })
    }
}

fn to_json(value: &impl Serialize) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// The variables Kubernetes sets for each service of a namespace (`INGEST_SERVICE_HOST`,
/// `INGEST_PORT=tcp://...`, `INGEST_PORT_9100_TCP_ADDR`): a service named like the binary must
/// not stop it from starting.
fn service_link(name: &str, value: &str) -> bool {
    let tail = name
        .rsplit_once("_PORT_")
        .map(|(_, tail)| tail.split('_').collect::<Vec<_>>());
    let port_var = |t: Vec<&str>| t.len() > 1 && t[0].parse::<u16>().is_ok() && t[1].len() <= 4;
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || (name.ends_with("_PORT") && value.contains("://"))
        || tail.is_some_and(port_var)
}

/// The file as JSON, every key checked against `fields`.
fn read_file(path: &Path, fields: &[Field]) -> Result<Json, SettingsError> {
    let error = |message: String| SettingsError::File {
        path: path.into(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let table = text.parse::<toml::Table>().map_err(|e| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        let message = e.message().trim().replace('\n', " ");
        error(format!("line {}: {message}", line.unwrap_or(0)))
    })?;
    let json = to_json(&table);
    let Some((key, known)) = first_unknown(&json, fields, "") else {
        return Ok(json);
    };
    let (table, last) = key.rsplit_once('.').unwrap_or(("", &key));
    let hint = did_you_mean(last, known.iter().map(String::as_str), |k| {
        format!("`{}`", join_key(table, k))
    });
    Err(error(format!("unknown setting `{key}`{hint}")))
}

/// The first key of `given` (dotted) that `fields` lack, with the keys its table knows. The
/// tables of a list are checked against its element, named by their position from 1
/// (`alarm[2].clear_belw`).
fn first_unknown(given: &Json, fields: &[Field], prefix: &str) -> Option<(String, Vec<String>)> {
    let Json::Object(given) = given else {
        return None;
    };
    given.iter().find_map(|(name, value)| {
        let key = join_key(prefix, name);
        let Some(field) = fields.iter().find(|f| f.name == name) else {
            return Some((key, fields.iter().map(|f| f.name.to_owned()).collect()));
        };
        match (&field.element, value) {
            (Some(Json::Object(element)), Json::Array(tables)) => {
                tables.iter().enumerate().find_map(|(n, table)| {
                    let mut keys = table.as_object()?.keys();
                    let unknown = keys.find(|k| !element.contains_key(*k))?;
                    let at = format!("{key}[{}].{unknown}", n + 1);
                    Some((at, element.keys().cloned().collect()))
                })
            }
            _ if field.fields.is_empty() => None,
            _ => first_unknown(value, &field.fields, &key),
        }
    })
}

/// `over` merged into `base`, table by table.
fn merge(base: &mut Json, over: Json) {
    match (base, over) {
        (Json::Object(base), Json::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key).or_insert(Json::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

/// `value` set at the dotted `key`.
fn merge_at(base: &mut Json, key: &str, value: Json) {
    let over = key.rsplit('.').fold(value, |v, part| json!({ part: v }));
    merge(base, over);
}

/// A serde path (`alarm[0].sum_above`) with tables counted from 1, as in the file.
fn readable_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment::{Map, Seq};
    let parts = path.iter().map(|segment| match segment {
        Seq { index } => format!("[{}]", index + 1),
        Map { key } => format!(".{key}"),
        other => format!(".{other}"),
    });
    parts.collect::<String>().trim_start_matches('.').to_owned()
}

/// `; did you mean X?`, X the known name nearest to `name` as `show` writes it, if it is a
/// near miss (at most two edits, or a third of a long name); else nothing.
fn did_you_mean<'k>(
    name: &str,
    known: impl IntoIterator<Item = &'k str>,
    show: impl Fn(&str) -> String,
) -> String {
    let limit = (name.len() / 3).max(2);
    let near = known.into_iter().map(|k| (strsim::levenshtein(name, k), k));
    let nearest = near.filter(|(d, _)| *d <= limit).min();
    nearest.map_or_else(String::new, |(_, k)| format!("; did you mean {}?", show(k)))
}

/// A value from a variable or a flag, typed by its flag's value name: a list split at commas,
/// a number or a boolean when the text is one, else the text (a wrong type is then reported
/// with the key).
fn typed(text: &str, value_name: &str) -> Json {
    let text = text.trim();
    match value_name {
        command::LIST => {
            let items = text.split(',').map(str::trim).filter(|s| !s.is_empty());
            Json::from(items.collect::<Vec<_>>())
        }
        "NUMBER" | "BOOL" => text.parse().unwrap_or_else(|_| Json::from(text)),
        _ => Json::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::settings! {
        /// A section for the tests.
        pub struct Inner {
            /// Host.
            host: String = "localhost".into(), env "MQTT_BROKER";
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
    fn the_generated_name_wins_over_a_further_one() {
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
            help.contains("is DEMO_SECTION_SOME_KEY and --section-some-key"),
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
