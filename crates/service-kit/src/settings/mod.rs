//! Settings, each said once: a service declares them with [`settings!`], every field with its
//! doc, default and limits. The file keys (`[window]` `seconds`), environment names
//! (`INGEST_WINDOW_SECONDS`), flags (`--window-seconds`), `--help`, the example file and the
//! checks of the limits all come from that declaration ([`Binary`]). Checks that relate two
//! settings are the service's own.

mod command;
mod error;
mod load;
mod mqtt;

use std::fmt::Display;
use std::ops::RangeInclusive;

use serde_json::Value as Json;

pub use error::SettingsError;
pub use load::Binary;
pub use mqtt::{MqttConfig, MqttSettings};

/// Declares settings sections: fields with a doc comment, a default, and optionally limits
/// (`in LOW..=HIGH`), a flag other than the generated one (`flag "listen"`) and a further
/// environment name (`env "MQTT_BROKER"`, which the generated one wins over). A field whose
/// type is itself a section is a `[table]` of the file. The caller needs serde's `derive`.
///
/// ```
/// service_kit::settings! {
///     /// The sliding window.
///     pub struct Window {
///         /// Window length in seconds.
///         seconds: u64 = 60, in 1..=86_400;
///     }
/// }
/// use service_kit::Setting;
/// let err = Window { seconds: 0 }.check("window").unwrap_err();
/// assert_eq!(err.to_string(), "invalid setting `window.seconds`: must be 1 to 86400, not 0");
/// ```
#[macro_export]
macro_rules! settings {
    ($($(#[doc = $sdoc:literal])* pub struct $name:ident { $(
        $(#[doc = $doc:literal])*
        $field:ident : $ty:ty = $default:expr
            $(, in $range:expr)? $(, flag $flag:literal)? $(, env $env:literal)?;
    )* })*) => { $(
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        pub struct $name { $( $(#[doc = $doc])* pub $field: $ty, )* }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::Setting for $name {
            fn fields() -> ::std::vec::Vec<$crate::Field> {
                ::std::vec![$($crate::Field {
                    name: ::std::stringify!($field),
                    ty: ::std::stringify!($ty),
                    doc: ::std::concat!($($doc, "\n",)* ""),
                    limits: None $(.or(Some($crate::describe_range(&($range)))))?,
                    flag: None $(.or(Some($flag)))?,
                    env: None $(.or(Some($env)))?,
                    fields: <$ty as $crate::Setting>::fields(),
                    element: <$ty as $crate::Setting>::element(),
                },)*]
            }

            fn check(&self, key: &str) -> ::std::result::Result<(), $crate::SettingsError> {
                $(
                    let at = $crate::join_key(key, ::std::stringify!($field));
                    $( $crate::in_range(&at, self.$field, $range)?; )?
                    $crate::Setting::check(&self.$field, &at)?;
                )*
                Ok(())
            }
        }
    )* };
}

/// One declared field, for names, help and the example file.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key within its section.
    pub name: &'static str,
    /// The Rust type as declared (`Option<PathBuf>`): it names the flag's value.
    pub ty: &'static str,
    /// The doc comment, a line per `///` line.
    pub doc: &'static str,
    /// The limits, e.g. `1 to 86400`.
    pub limits: Option<String>,
    /// The flag's name when it is not the generated one.
    pub flag: Option<&'static str>,
    /// A further environment name, besides the generated one.
    pub env: Option<&'static str>,
    /// A section's fields; empty for a value.
    pub fields: Vec<Field>,
    /// A list of tables (`[[alarm]]`): one table with every key it may hold.
    pub element: Option<Json>,
}

/// What settings need of a field's type; [`settings!`] implements it for sections.
pub trait Setting {
    /// A section's fields; empty for a value.
    fn fields() -> Vec<Field> {
        Vec::new()
    }

    /// A list of tables: one table with every key it may hold.
    fn element() -> Option<Json> {
        None
    }

    /// Checks the limits of every field below `key`.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first field out of its limits.
    fn check(&self, _key: &str) -> Result<(), SettingsError> {
        Ok(())
    }
}

macro_rules! values {
    ($($ty:ty),*) => { $( impl Setting for $ty {} )* };
}
values!(bool, u8, u16, u32, u64, usize, f64, String, crate::Secret);
values!(std::path::PathBuf, std::net::SocketAddr);
impl<T> Setting for Option<T> {}

/// A list of values, or of tables whose keys are those of the default element.
impl<T: serde::Serialize + Default> Setting for Vec<T> {
    fn element() -> Option<Json> {
        serde_json::to_value(T::default())
            .ok()
            .filter(Json::is_object)
    }
}

/// `section.key`, or `key` at the top.
pub fn join_key(section: &str, key: &str) -> String {
    match section {
        "" => key.to_owned(),
        _ => format!("{section}.{key}"),
    }
}

/// Ok when `value` lies in `range`, else an error naming `setting`.
///
/// # Errors
/// [`SettingsError::Invalid`] with the range and the value.
pub fn in_range<T: PartialOrd + Display>(
    setting: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), SettingsError> {
    let message = format!("must be {}, not {value}", describe_range(&range));
    ensure(range.contains(&value), setting, message)
}

/// Ok when `ok`, else an error naming `setting`: the check of a setting that a limit cannot
/// express.
///
/// # Errors
/// [`SettingsError::Invalid`] with `message`.
pub fn ensure(ok: bool, setting: &str, message: impl Into<String>) -> Result<(), SettingsError> {
    ok.then_some(())
        .ok_or_else(|| SettingsError::invalid(setting, message))
}

/// `1 to 86400`, as help texts and messages say it.
pub fn describe_range<T: Display>(range: &RangeInclusive<T>) -> String {
    format!("{} to {}", range.start(), range.end())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::settings! {
        /// A section for the tests.
        pub struct Inner {
            /// A port.
            port: u16 = 1883, in 1..=65_535;
        }
    }

    crate::settings! {
        /// Settings for the tests.
        pub struct Outer {
            /// The inner section.
            inner: Inner = Inner::default();
            /// A ratio.
            ratio: f64 = 0.5, in 0.0..=1.0;
        }
    }

    #[test]
    fn limits_name_the_dotted_key() {
        assert!(Outer::default().check("").is_ok());
        let mut outer = Outer::default();
        outer.inner.port = 0;
        let err = outer.check("").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting `inner.port`: must be 1 to 65535, not 0"
        );
        outer.inner.port = 1;
        outer.ratio = f64::NAN;
        let err = outer.check("").unwrap_err().to_string();
        assert!(err.contains("`ratio`") && err.contains("0 to 1"), "{err}");
    }

    #[test]
    fn fields_carry_docs_limits_and_sections() {
        let fields = Outer::fields();
        assert_eq!((fields[0].name, fields[0].fields.len()), ("inner", 1));
        assert_eq!(fields[0].fields[0].limits.as_deref(), Some("1 to 65535"));
        assert_eq!(fields[1].doc.trim(), "A ratio.");
        assert!(fields[1].fields.is_empty());
    }
}
