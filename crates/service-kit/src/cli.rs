//! Command-line parsing with the same error shape as every other bad setting: one line on
//! stderr and exit code 2 (`--help` and `--version` print as usual and exit 0).

use clap::Parser;
use clap::error::ErrorKind;

use crate::settings_error::EXIT_BAD_SETTINGS;

/// Parses the process's arguments into `C`. The shared flags' help says `<PREFIX>` for the
/// environment prefix; it is replaced by `env_prefix` (`INGEST`, ...) so `--help` shows the
/// binary's real variable names. A bad flag prints clap's first line (which names the flag
/// and the value) prefixed with `binary`, and exits with code 2.
pub fn parse_or_exit<C: Parser>(binary: &str, env_prefix: &str) -> C {
    let command = C::command().mut_args(|arg| match arg.get_help() {
        Some(help) if help.to_string().contains("<PREFIX>") => {
            let help = help.to_string().replace("<PREFIX>", env_prefix);
            arg.help(help)
        }
        _ => arg,
    });
    match command
        .try_get_matches()
        .and_then(|matches| C::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("{binary}: {first} (see --help)");
            std::process::exit(i32::from(EXIT_BAD_SETTINGS))
        }
    }
}
