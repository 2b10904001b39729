//! The error every binary's settings loading returns, so ingest, gateway and simulator report
//! a bad setting to the operator in the same words: one line that names it, exit code 2.

use std::path::PathBuf;

use crate::SecurityError;

/// Exit code of a binary whose settings cannot be used (the code clap uses for usage errors).
pub const EXIT_BAD_SETTINGS: u8 = 2;

/// Why a binary's settings cannot be used. Every variant displays as one line naming the file,
/// the setting or both, so the operator can fix it without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The `--config` file cannot be read or is not TOML.
    #[error("settings file {}: {message}", path.display())]
    File {
        /// The file as given to `--config`.
        path: PathBuf,
        /// The OS or TOML error, with the line for a syntax error.
        message: String,
    },
    /// The `--config` file has a key no setting has: a typo must not be silently ignored.
    #[error("settings file {}: unknown setting `{key}`{hint}", path.display())]
    UnknownKey {
        /// The file as given to `--config`.
        path: PathBuf,
        /// The full dotted key, e.g. `ws.max_clientz`.
        key: String,
        /// `"; did you mean `max_clients`?"` when a known key is close, else empty.
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
    /// Merging the layers failed in a way the `config` crate describes itself.
    #[error("cannot load settings: {0}")]
    Load(config::ConfigError),
    /// A value was read but makes no sense, caught once at start-up rather than at first use.
    #[error("invalid setting `{setting}`{aka}: {message}")]
    Invalid {
        /// The setting's key as the operator writes it, e.g. `window_seconds` or
        /// `ws.max_clients`.
        setting: String,
        /// ``" (old spelling `mqtt_tls`)"`` when the setting has an older name, else empty.
        aka: String,
        /// What is wrong with it, in terms of the value the operator gave.
        message: String,
    },
}

impl SettingsError {
    /// Shorthand for [`SettingsError::Invalid`], so a validation step stays one line whether
    /// its message is a literal or a `format!`.
    pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            setting: setting.into(),
            aka: String::new(),
            message: message.into(),
        }
    }

    /// Adds the older spelling of the named setting, from `(old, new)` pairs, so an operator
    /// who still writes `mqtt_tls_ca_file` recognises the `mqtt.tls_ca_file` in the message.
    #[must_use]
    pub fn with_old_spelling(mut self, aliases: &[(&str, &str)]) -> Self {
        if let Self::Invalid { setting, aka, .. } = &mut self
            && let Some((old, _)) = aliases.iter().find(|(_, new)| new == setting)
        {
            *aka = format!(" (old spelling `{old}`)");
        }
        self
    }

    /// Prints the error as one line on stderr, prefixed with the binary's name, and exits
    /// with [`EXIT_BAD_SETTINGS`]. Never a backtrace, whatever `RUST_BACKTRACE` says: this is
    /// the operator's mistake, not the program's.
    pub fn exit(&self, binary: &str) -> ! {
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
                key,
                found: unexpected.to_string(),
                expected: expected.to_owned(),
            },
            other => Self::Load(other),
        }
    }
}

/// Login and TLS errors already name the setting; they become [`SettingsError::Invalid`].
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
    fn security_errors_show_unchanged() {
        let err = SettingsError::from(SecurityError {
            setting: "mqtt.tls_ca_file".into(),
            message: "no certificate".into(),
        });
        assert_eq!(
            err.to_string(),
            "invalid setting `mqtt.tls_ca_file`: no certificate"
        );
    }

    #[test]
    fn old_spelling_is_named_beside_the_new_one() {
        let err = SettingsError::invalid("mqtt.tls_ca_file", "is required with TLS")
            .with_old_spelling(&[
                ("mqtt_host", "mqtt.host"),
                ("mqtt_tls_ca_file", "mqtt.tls_ca_file"),
            ]);
        assert_eq!(
            err.to_string(),
            "invalid setting `mqtt.tls_ca_file` (old spelling `mqtt_tls_ca_file`): is required with TLS"
        );
    }
}
