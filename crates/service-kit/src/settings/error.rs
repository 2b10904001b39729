//! Why settings cannot be used, in one line that names the file, key, variable or flag;
//! [`SettingsError::exit`] ends the process with exit code 2.

use std::path::PathBuf;

/// Why settings cannot be used. Every variant displays as one line.
#[allow(missing_docs)] // Each variant's doc says what its fields hold.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings file cannot be read, is not TOML (with the line of a syntax error) or has
    /// a key no setting has (with a "did you mean").
    #[error("settings file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A variable with the binary's prefix names no setting; `hint` is a "did you mean" or
    /// empty.
    #[error("environment variable {name} names no setting{hint}")]
    UnknownVariable { name: String, hint: String },
    /// A value is of the wrong type or makes no sense.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid { setting: String, message: String },
    /// The command line cannot be parsed.
    #[error("{0} (see --help)")]
    Flag(String),
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

    /// Prints one line on stderr, prefixed with `binary`, and exits with code 2 (clap's code
    /// for usage errors); never a backtrace: this is the operator's mistake.
    /// [`SettingsError::Shown`] goes to stdout, exit code 0, and a reader that closes the pipe
    /// early (`| head`) is no error.
    pub fn exit(&self, binary: &str) -> ! {
        if let Self::Shown(text) = self {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            std::process::exit(0)
        }
        eprintln!("{binary}: {}", self.to_string().replace(['\r', '\n'], " "));
        std::process::exit(2)
    }
}
