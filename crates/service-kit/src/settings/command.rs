//! The command line, built from the settings: one flag per setting, its help from the field's
//! doc with its environment name, limits and default, plus `--config` and
//! `--example-config`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};
use config::Value;
use serde_json::Value as Json;

use super::load::{Leaf, typed_like};
use super::{Binary, SettingsError, example};

/// What the command line said.
pub(super) struct Parsed {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// The flags given, as `(key, value)` overrides.
    pub flags: Vec<(String, Value)>,
}

/// Parses `args` (the program name first) against the settings' flags.
///
/// # Errors
/// [`SettingsError::Flag`] for a bad command line; [`SettingsError::Shown`] for `--help`,
/// `--version` and `--example-config`.
pub(super) fn parse(
    binary: &Binary,
    leaves: &[Leaf],
    defaults: &Json,
    fields: &[super::Field],
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Parsed, SettingsError> {
    let matches = command(binary, leaves)
        .try_get_matches_from(args)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                SettingsError::Shown(e.render().to_string())
            }
            _ => {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                SettingsError::Flag(first.trim_start_matches("error: ").to_owned())
            }
        })?;
    if matches.get_flag("example-config") {
        return Err(SettingsError::Shown(example::render(
            binary, fields, defaults,
        )));
    }
    let flags = leaves
        .iter()
        .filter(|leaf| matches.value_source(&leaf.key) == Some(ValueSource::CommandLine))
        .filter_map(|leaf| {
            let text = matches.get_one::<String>(&leaf.key)?;
            Some((leaf.key.clone(), typed_like(text, &leaf.default)))
        })
        .collect();
    Ok(Parsed {
        config: matches.get_one::<String>("config").map(PathBuf::from),
        flags,
    })
}

fn command(binary: &Binary, leaves: &[Leaf]) -> Command {
    let prefix = binary.env_prefix;
    let command = Command::new(binary.name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(binary.about)
        .max_term_width(100)
        .after_help(format!(
            "{} Precedence: defaults < file < environment < flags. \
             Logs: RUST_LOG (default info), LOG_FORMAT=json.",
            binary.naming_rule(leaves)
        ))
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help(format!(
                    "Settings file (TOML); an unknown key in it is an error [env: {prefix}_CONFIG]"
                )),
        )
        .arg(
            Arg::new("example-config")
                .long("example-config")
                .action(ArgAction::SetTrue)
                .help("Print a settings file with every key, its default and its meaning"),
        );
    leaves
        .iter()
        .fold(command, |command, leaf| command.arg(flag(binary, leaf)))
}

fn flag(binary: &Binary, leaf: &Leaf) -> Arg {
    let doc = leaf
        .field
        .doc
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let mut help = doc.trim().trim_end_matches('.').to_owned();
    if let Some(limits) = &leaf.field.limits {
        help.push_str(&format!("; {limits}"));
    }
    let mut names = vec![leaf.env.clone()];
    names.extend(
        binary
            .env_aliases
            .iter()
            .filter(|(_, key)| *key == leaf.key)
            .map(|(name, _)| (*name).to_owned()),
    );
    help.push_str(&format!(
        " [env: {}] [default: {}]",
        names.join(", "),
        example::shown(&leaf.default).unwrap_or_else(|| "none".into())
    ));
    let arg = Arg::new(leaf.key.clone())
        .long(leaf.flag.clone())
        .help(help)
        .value_parser(clap::value_parser!(String));
    let ty = leaf.field.ty.replace(' ', "");
    if ty.contains("bool") {
        // `--flag` alone means true; `--flag false` or `--flag=false` turns it off.
        return arg
            .value_name("BOOL")
            .num_args(0..=1)
            .default_missing_value("true");
    }
    let name = [
        ("Vec", "A,B,..."),
        ("PathBuf", "PATH"),
        ("SocketAddr", "ADDR"),
        ("Secret", "SECRET"),
        ("f64", "NUMBER"),
        ("String", "TEXT"),
    ]
    .iter()
    .find(|(rust, _)| ty.contains(rust))
    .map_or("N", |(_, name)| name);
    // A negative number must reach its setting's check, not be taken for a flag.
    arg.value_name(name).allow_hyphen_values(true)
}
