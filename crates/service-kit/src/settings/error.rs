//! Why settings cannot be used, in one line that names the file, key, variable or flag;
//! [`SettingsError::exit`] ends the process with exit code 2.

use std::path::PathBuf;

/// Exit code of a binary whose settings cannot be used (clap's code for usage errors).
pub const EXIT_BAD_SETTINGS: u8 = 2;

/// Why settings cannot be used. Every variant displays as one line.
#[allow(missing_docs)] // Each variant's doc says what its fields hold.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings file cannot be read or is not TOML (with the line of a syntax error).
    #[error("settings file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// The file has a key no setting has; `hint` is a "did you mean" or empty.
    #[error("settings file {}: unknown setting `{key}`{hint}", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    /// A variable with the binary's prefix names no setting; `hint` as above.
    #[error("environment variable {name} names no setting{hint}")]
    UnknownVariable { name: String, hint: String },
    /// A value is of the wrong type or makes no sense.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid { setting: String, message: String },
    /// The command line cannot be parsed.
    #[error("{0} (see --help)")]
    Flag(String),
    /// Merging the layers failed in a way the `config` crate describes itself.
    #[error("cannot load settings: {0}")]
    Load(config::ConfigError),
    /// Not a failure: the text `--help`, `--version` or `--example-config` asked for.
    #[error("{0}")]
    Shown(String),
}

impl SettingsError {
    /// Shorthand for [`SettingsError::Invalid`].
    pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        let (setting, message) = (setting.into(), message.into());
        Self::Invalid { setting, message }
    }

    /// Prints one line on stderr, prefixed with `binary`, and exits with code 2; never a
    /// backtrace: this is the operator's mistake. [`SettingsError::Shown`] goes to stdout,
    /// exit code 0, and a reader that closes the pipe early (`| head`) is no error.
    pub fn exit(&self, binary: &str) -> ! {
        if let Self::Shown(text) = self {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            std::process::exit(0)
        }
        eprintln!("{binary}: {}", self.to_string().replace(['\r', '\n'], " "));
        std::process::exit(i32::from(EXIT_BAD_SETTINGS))
    }
}

impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        use config::ConfigError::{At, Message, Type};
        match error {
            Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::invalid(
                readable_key(&key),
                format!("{unexpected}, expected {expected}"),
            ),
            At {
                error,
                key: Some(key),
                ..
            } => match *error {
                Message(message) => Self::invalid(readable_key(&key), message),
                other => Self::from(other),
            },
            other => Self::Load(other),
        }
    }
}

/// The `config` crate's `alarm[0]sum_above` as `alarm[1].sum_above`: tables counted from 1,
/// as in the file.
fn readable_key(key: &str) -> String {
    let mut out = String::new();
    for (n, part) in key.split('[').enumerate() {
        match part.split_once(']') {
            Some((index, rest)) if n > 0 => {
                let index = index
                    .parse::<usize>()
                    .map_or(index.to_owned(), |i| (i + 1).to_string());
                let dot = if rest.is_empty() || rest.starts_with('.') {
                    ""
                } else {
                    "."
                };
                out.push_str(&format!("[{index}]{dot}{rest}"));
            }
            _ => out.push_str(part),
        }
    }
    out
}

/// Login and TLS errors already name the setting.
impl From<crate::SecurityError> for SettingsError {
    fn from(error: crate::SecurityError) -> Self {
        Self::invalid(error.setting, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keys_read_as_dotted_paths_counted_from_one() {
        assert_eq!(readable_key("alarm[0]sum_above"), "alarm[1].sum_above");
        assert_eq!(readable_key("ws.max_clients"), "ws.max_clients");
        assert_eq!(readable_key("a[1][2]b"), "a[2][3].b");
    }
}
