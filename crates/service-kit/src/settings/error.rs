//! Why a service's settings cannot be used, said to the operator in one line that names the
//! file, the key, the variable or the flag; [`SettingsError::exit`] ends the process with
//! exit code 2.

use std::path::PathBuf;

use crate::SecurityError;

/// Exit code of a binary whose settings cannot be used (the code clap uses for usage errors).
pub const EXIT_BAD_SETTINGS: u8 = 2;

/// Why settings cannot be used. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings file cannot be read or is not TOML.
    #[error("settings file {}: {message}", path.display())]
    File {
        /// The file as given.
        path: PathBuf,
        /// The OS or TOML error, with the line for a syntax error.
        message: String,
    },
    /// The file has a key no setting has: a typo must not be silently ignored.
    #[error("settings file {}: unknown setting `{key}`{hint}", path.display())]
    UnknownKey {
        /// The file as given.
        path: PathBuf,
        /// The full dotted key, e.g. `ws.max_clientz`, or `alarm[2].clear_belw` in a list.
        key: String,
        /// `"; did you mean `ws.max_clients`?"` when a known key is close, else empty.
        hint: String,
    },
    /// An environment variable carries the service's prefix but names no setting.
    #[error("environment variable {name} names no setting{hint}")]
    UnknownVariable {
        /// The variable, e.g. `INGEST_WINDOW_SECOND`.
        name: String,
        /// `"; did you mean INGEST_WINDOW_SECONDS?"` when a known name is close, else empty.
        hint: String,
    },
    /// A value has the wrong type (from the file, the environment or a flag).
    #[error("invalid setting `{key}`: {found}, expected {expected}")]
    Type {
        /// The dotted key.
        key: String,
        /// What was given, e.g. ``string "soon"``.
        found: String,
        /// What the setting takes.
        expected: String,
    },
    /// A value was read but makes no sense, caught once at start-up rather than at first use.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid {
        /// The dotted key, e.g. `ws.max_clients`.
        setting: String,
        /// What is wrong with it, in terms of the value given.
        message: String,
    },
    /// The command line cannot be parsed (an unknown flag, a missing value).
    #[error("{0} (see --help)")]
    Flag(String),
    /// Merging the layers failed in a way the `config` crate describes itself.
    #[error("cannot load settings: {0}")]
    Load(config::ConfigError),
    /// Not a failure: `--help`, `--version` or `--example-config` asked for this text.
    #[error("{0}")]
    Shown(String),
}

impl SettingsError {
    /// Shorthand for [`SettingsError::Invalid`].
    pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// Prints the error as one line on stderr, prefixed with the binary's name, and exits with
    /// [`EXIT_BAD_SETTINGS`]; never a backtrace: this is the operator's mistake, not the
    /// program's. [`SettingsError::Shown`] is printed on stdout instead, with exit code 0.
    pub fn exit(&self, binary: &str) -> ! {
        if let Self::Shown(text) = self {
            // A closed pipe (`ingest --help | head -3`) is the reader's choice, not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            std::process::exit(0)
        }
        // A value may hold a newline (a quoted TOML string); keep the report on one line.
        let line = self.to_string().replace(['\r', '\n'], " ");
        eprintln!("{binary}: {line}");
        std::process::exit(i32::from(EXIT_BAD_SETTINGS))
    }
}

impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        match error {
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::Type {
                key: readable_key(&key),
                found: unexpected.to_string(),
                expected: expected.to_owned(),
            },
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => match *error {
                config::ConfigError::Message(message) => Self::invalid(readable_key(&key), message),
                other => Self::from(other),
            },
            other => Self::Load(other),
        }
    }
}

/// `alarm[0]sum_above`, as the `config` crate writes a key in a list, as `alarm[1].sum_above`:
/// tables counted from 1, as the operator counts them in the file.
fn readable_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut rest = key;
    while let Some((before, after)) = rest.split_once('[') {
        out.push_str(before);
        let Some((index, tail)) = after.split_once(']') else {
            rest = after;
            out.push('[');
            break;
        };
        match index.parse::<usize>() {
            Ok(n) => out.push_str(&format!("[{}]", n + 1)),
            Err(_) => out.push_str(&format!("[{index}]")),
        }
        if !tail.is_empty() && !tail.starts_with(['.', '[']) {
            out.push('.');
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Login and TLS errors already name the setting.
impl From<SecurityError> for SettingsError {
    fn from(error: SecurityError) -> Self {
        Self::invalid(error.setting, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_setting_and_the_problem() {
        let err = SettingsError::invalid("ws.max_clients", "must be at least 1");
        assert_eq!(
            err.to_string(),
            "invalid setting `ws.max_clients`: must be at least 1"
        );
    }

    #[test]
    fn list_keys_read_as_dotted_paths() {
        assert_eq!(readable_key("alarm[0]sum_above"), "alarm[1].sum_above");
        assert_eq!(readable_key("ws.max_clients"), "ws.max_clients");
        assert_eq!(readable_key("a[1][2]b"), "a[2][3].b");
    }
}
