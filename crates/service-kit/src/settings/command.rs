//! What the settings show: the command line (a flag per setting, its help from the doc with
//! its limits, variables and default, plus `--config` and `--example-config`) and the example
//! settings file, every key with the same facts, which is each service's settings reference.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, Command};
use serde_json::Value as Json;

use super::load::Leaf;
use super::{Binary, Field, SettingsError, join_key};

/// Parses `args` (program name first): the flags given, by key (`config` for `--config`).
///
/// # Errors
/// [`SettingsError::Flag`] for a bad command line, [`SettingsError::Shown`] for the texts.
pub(super) fn parse(
    binary: &Binary,
    leaves: &[Leaf],
    fields: &[Field],
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<BTreeMap<String, String>, SettingsError> {
    let matches = command(binary, leaves)
        .try_get_matches_from(args)
        .map_err(|e| {
            let text = e.render().to_string();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => SettingsError::Shown(text),
                _ => SettingsError::Flag(
                    text.lines()
                        .next()
                        .unwrap_or_default()
                        .replace("error: ", ""),
                ),
            }
        })?;
    if matches.get_flag("example-config") {
        return Err(SettingsError::Shown(example(binary, leaves, fields)));
    }
    let keys = leaves.iter().map(|l| l.key.as_str()).chain(["config"]);
    let given =
        keys.filter_map(|key| Some((key.to_owned(), matches.get_one::<String>(key)?.clone())));
    Ok(given.collect())
}

fn command(binary: &Binary, leaves: &[Leaf]) -> Command {
    let prefix = binary.env_prefix;
    let config =
        format!("Settings file (TOML); an unknown key in it is an error [env: {prefix}_CONFIG]");
    let rule = naming_rule(prefix).replace('\n', " ");
    let command = Command::new(binary.name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(binary.about)
        .after_help(format!(
            "{rule} Logs: RUST_LOG (default info), LOG_FORMAT=json."
        ))
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help(config),
        )
        .arg(
            Arg::new("example-config")
                .long("example-config")
                .action(ArgAction::SetTrue)
                .help("Print a settings file with every key, its meaning and its default"),
        );
    leaves
        .iter()
        .fold(command, |command, leaf| command.arg(flag(leaf)))
}

fn flag(leaf: &Leaf) -> Arg {
    let doc = leaf.field.doc.split_whitespace().collect::<Vec<_>>();
    let limits = leaf.field.limits.as_ref().map(|l| format!("; {l}"));
    let help = format!(
        "{}{} [env: {}] [default: {}]",
        doc.join(" ").trim_end_matches('.'),
        limits.unwrap_or_default(),
        leaf.env.join(", "),
        shown(&leaf.default),
    );
    let arg = Arg::new(leaf.key.clone())
        .long(leaf.flag.clone())
        .value_name(leaf.value_name)
        .help(help);
    if leaf.value_name == "BOOL" {
        // `--flag` alone means true; `--flag false` turns it off.
        return arg.num_args(0..=1).default_missing_value("true");
    }
    // A negative number must reach its setting's check, not be taken for a flag.
    arg.allow_hyphen_values(true)
}

/// The value name of a list flag (`A,B,...`).
pub(super) const LIST: &str = "A,B,...";

/// What a flag's value is called, from its field's declared type.
pub(super) fn value_name(ty: &str) -> &'static str {
    let names = [
        ("bool", "BOOL"),
        ("Vec", LIST),
        ("PathBuf", "PATH"),
        ("SocketAddr", "ADDR"),
        ("String", "TEXT"),
        ("Secret", "TEXT"),
    ];
    let name = names.iter().find(|(rust, _)| ty.contains(rust));
    name.map_or("NUMBER", |(_, name)| name)
}

/// The naming rule, said with the binary's prefix, in the lines of the example file.
fn naming_rule(prefix: &str) -> String {
    format!(
        "Every setting is a key of the settings file, an environment variable and a flag: the key\n\
         `section.some_key` ([section] some_key) is {prefix}_SECTION_SOME_KEY and\n\
         --section-some-key. Precedence: defaults < file (--config, or {prefix}_CONFIG) <\n\
         environment < flags."
    )
}

/// The example settings file: every key commented out with its default, in the order of the
/// declaration (top-level keys first: TOML puts every key after a `[table]` header into it).
pub(super) fn example(binary: &Binary, leaves: &[Leaf], fields: &[Field]) -> String {
    let (name, rule) = (binary.name, naming_rule(binary.env_prefix));
    let mut out = format!(
        "# Settings of {name}: every key with its default (uncomment what you change).\n\
         # Generated by `{name} --example-config`; the same text is its settings reference.\n#\n\
         # {}\n",
        rule.replace('\n', "\n# ")
    );
    section(&mut out, leaves, fields, "");
    out
}

fn section(out: &mut String, leaves: &[Leaf], fields: &[Field], prefix: &str) {
    for leaf in leaves
        .iter()
        .filter(|l| l.key == join_key(prefix, l.field.name))
    {
        let field = &leaf.field;
        out.push('\n');
        comment(out, field);
        out.push_str(&format!("# {}, --{}\n", leaf.env.join(", "), leaf.flag));
        match leaf.default {
            // Values are strings, numbers, booleans and lists of them: JSON writes them as TOML.
            Json::Null => out.push_str(&format!("# Not set by default.\n#{} =\n", field.name)),
            ref value => out.push_str(&format!("#{} = {value}\n", field.name)),
        }
    }
    for field in fields.iter().filter(|f| !f.fields.is_empty()) {
        let key = join_key(prefix, field.name);
        out.push_str(&format!("\n[{key}]\n"));
        comment(out, field);
        section(out, leaves, &field.fields, &key);
    }
    // Lists of tables (`[[alarm]]`) last, so that no key below one falls into it; their doc
    // shows an example.
    for field in fields.iter().filter(|f| f.element.is_some()) {
        out.push('\n');
        comment(out, field);
    }
}

/// The field's doc and limits as comment lines.
fn comment(out: &mut String, field: &Field) {
    for line in field.doc.lines() {
        out.push_str(format!("#{line}").trim_end());
        out.push('\n');
    }
    if let Some(limits) = &field.limits {
        out.push_str(&format!("# Allowed: {limits}.\n"));
    }
}

/// A default as `--help` shows it: text without quotes, a list comma separated.
fn shown(value: &Json) -> String {
    match value {
        Json::Null => "none".into(),
        Json::String(s) if s.is_empty() => "\"\"".into(),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.is_empty() => "empty".into(),
        Json::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
