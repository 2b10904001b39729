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
    let command = Command::new(binary.name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(binary.about)
        .after_help(format!(
            "{} Logs: RUST_LOG (default info), LOG_FORMAT=json.",
            naming_rule(binary, leaves)
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
    let mut help = leaf
        .field
        .doc
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    help = help.trim_end_matches('.').to_owned();
    if let Some(limits) = &leaf.field.limits {
        help.push_str(&format!("; {limits}"));
    }
    let default = shown(&leaf.default).unwrap_or_else(|| "none".into());
    help.push_str(&format!(
        " [env: {}] [default: {default}]",
        leaf.env.join(", ")
    ));
    let arg = Arg::new(leaf.key.clone())
        .long(leaf.flag.clone())
        .help(help);
    let ty = leaf.field.ty.replace(' ', "");
    if ty.contains("bool") {
        // `--flag` alone means true; `--flag false` turns it off.
        return arg
            .value_name("BOOL")
            .num_args(0..=1)
            .default_missing_value("true");
    }
    let names = [
        ("Vec", "A,B,..."),
        ("PathBuf", "PATH"),
        ("SocketAddr", "ADDR"),
        ("String", "TEXT"),
        ("Secret", "TEXT"),
    ];
    let name = names
        .iter()
        .find(|(rust, _)| ty.contains(rust))
        .map_or("NUMBER", |(_, name)| name);
    // A negative number must reach its setting's check, not be taken for a flag.
    arg.value_name(name).allow_hyphen_values(true)
}

/// The naming rule, shown on one of the binary's own settings.
fn naming_rule(binary: &Binary, leaves: &[Leaf]) -> String {
    let dotted = |l: &&Leaf| l.key.contains('.') && l.field.flag.is_none();
    let own = leaves
        .iter()
        .filter(dotted)
        .find(|l| !l.key.starts_with("mqtt."));
    let Some(leaf) = own.or_else(|| leaves.iter().find(dotted)) else {
        return String::new();
    };
    format!(
        "Every setting is a key of the settings file, an environment variable and a flag: the \
         key `{}` is {} and --{}. Precedence: defaults < file (--config, or {}_CONFIG) < \
         environment < flags.",
        leaf.key, leaf.env[0], leaf.flag, binary.env_prefix
    )
}

/// The example settings file: every key commented out with its default, in the order of the
/// declaration (top-level keys first: TOML puts every key after a `[table]` header into it).
pub(super) fn example(binary: &Binary, leaves: &[Leaf], fields: &[Field]) -> String {
    let name = binary.name;
    let mut out = format!(
        "# Settings of {name}: every key with its default (uncomment what you change).\n\
         # Generated by `{name} --example-config`; the same text is its settings reference.\n#\n"
    );
    let mut line = String::from("#");
    for word in naming_rule(binary, leaves).split_whitespace() {
        if line.len() + word.len() > 90 {
            out.push_str(&format!("{line}\n"));
            line = String::from("#");
        }
        line.push_str(&format!(" {word}"));
    }
    out.push_str(&format!("{line}\n"));
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
fn shown(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) if s.is_empty() => Some("\"\"".into()),
        Json::String(s) => Some(s.clone()),
        Json::Array(items) if items.is_empty() => Some("empty".into()),
        Json::Array(items) => Some(items.iter().filter_map(shown).collect::<Vec<_>>().join(",")),
        other => Some(other.to_string()),
    }
}
