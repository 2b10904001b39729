//! The error every binary's `configuration.rs` returns when its settings cannot be used, so
//! ingest, gateway and simulator report a bad setting to the operator in the same words.

use crate::SecurityError;

/// Why a binary's settings cannot be used. Each variant names the source or the setting, so
/// the operator can fix the file, variable or flag without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file, an environment variable or a flag could not be read or merged; the `config`
    /// crate's message names the key.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A broker login or TLS setting cannot work; kept as is because [`SecurityError`]
    /// already names the setting in the binary's own spelling.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A value was read but makes no sense, caught once at start-up rather than at first use.
    #[error("invalid setting `{setting}`: {message}")]
    Invalid {
        /// The setting's key as the operator writes it, e.g. `window_seconds` or
        /// `ws.max_clients`; static because validation names keys it knows in advance.
        setting: &'static str,
        /// What is wrong with it, in terms of the value the operator gave.
        message: String,
    },
}

impl SettingsError {
    /// Shorthand for [`SettingsError::Invalid`], so a validation step stays one line whether
    /// its message is a literal or a `format!`.
    pub fn invalid(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            message: message.into(),
        }
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
}
