//! Settings, each said once. A service declares its settings with [`settings!`]: one typed
//! struct per section, every field with its doc, its default and its limits beside it. From
//! that one declaration come
//!
//! - the file's keys (`[window]` `seconds`), the environment names (`INGEST_WINDOW_SECONDS`)
//!   and the flags (`--window-seconds`), by one rule ([`Binary`]);
//! - `--help` with every flag's environment name and default, and the example file that
//!   lists every key ([`Binary::example`]);
//! - the checks of the limits, naming the key ([`Setting::check`]).
//!
//! Layering is defaults < file < environment < flags ([`Binary::load`]). Checks that relate
//! two settings are the service's own, written beside its declaration.

mod command;
mod error;
mod example;
mod load;
mod mqtt;

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;

pub use error::{EXIT_BAD_SETTINGS, SettingsError};
pub use load::Binary;
pub use mqtt::{ClientId, MqttConfig, MqttSettings, no_delay};

/// Declares a settings section: a struct whose fields are settings or sections, each with its
/// doc comment, its default and, optionally, its limits (`in LOW..=HIGH`) and a flag name
/// other than the generated one (`flag "listen"`):
///
/// ```
/// service_kit::settings! {
///     /// The sliding window.
///     pub struct Window {
///         /// Window length in seconds.
///         seconds: u64 = 60, in 1..=86_400;
///         /// Address of the health endpoint.
///         listen: String = "0.0.0.0:9100".into(), flag "health-listen";
///     }
/// }
/// use service_kit::Setting;
/// assert_eq!(Window::default().seconds, 60);
/// let err = Window { seconds: 0, ..Window::default() }.check("window").unwrap_err();
/// assert_eq!(err.to_string(), "invalid setting `window.seconds`: must be 1 to 86400, not 0");
/// ```
///
/// A field whose type is itself a section becomes a `[table]` of the file. The calling crate
/// needs `serde` with `derive`.
#[macro_export]
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr
                $(, in $range:expr)?
                $(, flag $flag:literal)?
                ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::Setting for $name {
            fn fields() -> ::std::vec::Vec<$crate::Field> {
                ::std::vec![$(
                    $crate::Field {
                        name: ::std::stringify!($field),
                        ty: ::std::stringify!($ty),
                        doc: ::std::concat!($($doc, "\n",)* ""),
                        limits: None $(.or(Some($crate::describe_range(&($range)))))?,
                        flag: None $(.or(Some($flag)))?,
                        fields: <$ty as $crate::Setting>::fields(),
                        element: <$ty as $crate::Setting>::element(),
                    },
                )*]
            }

            fn check(&self, key: &str) -> ::std::result::Result<(), $crate::SettingsError> {
                $(
                    let at = $crate::join_key(key, ::std::stringify!($field));
                    $( $crate::in_range(&at, &self.$field, $range)?; )?
                    $crate::Setting::check(&self.$field, &at)?;
                )*
                Ok(())
            }
        }
    };
}

/// One field of a section, as documentation and for the names derived from it.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key within its section.
    pub name: &'static str,
    /// The Rust type as declared, e.g. `Option<PathBuf>`: it names the flag's value.
    pub ty: &'static str,
    /// The doc comment, one line per `///` line.
    pub doc: &'static str,
    /// The limits, e.g. `1 to 86400`, when the field has any.
    pub limits: Option<String>,
    /// The flag's name when it is not the generated one.
    pub flag: Option<&'static str>,
    /// The fields of a section; empty for a value.
    pub fields: Vec<Field>,
    /// For a list of tables (`[[alarm]]`): one table with every key it may hold.
    pub element: Option<Json>,
}

/// What the settings machinery needs of a field's type. Values have no fields and no limits
/// of their own; [`settings!`] implements it for sections.
pub trait Setting {
    /// The fields of a section; empty for a value.
    fn fields() -> Vec<Field> {
        Vec::new()
    }

    /// For a list of tables: one table with every key it may hold.
    fn element() -> Option<Json> {
        None
    }

    /// Checks the limits of every field below `key`, naming the first one out of them.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the field.
    fn check(&self, _key: &str) -> Result<(), SettingsError> {
        Ok(())
    }
}

macro_rules! plain_values {
    ($($ty:ty),*) => { $( impl Setting for $ty {} )* };
}
plain_values!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    f64,
    String,
    PathBuf,
    SocketAddr,
    crate::Secret
);

impl<T> Setting for Option<T> {}

/// A list of values, or of tables (`[[alarm]]`) whose keys come from a default element.
impl<T: Serialize + Default> Setting for Vec<T> {
    fn element() -> Option<Json> {
        serde_json::to_value(T::default())
            .ok()
            .filter(Json::is_object)
    }
}

/// `section.key`, or `key` at the top.
pub fn join_key(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// A field's value, or `None` for an unset optional one: what a limit applies to.
pub trait Limited<T> {
    /// The value to check, if any.
    fn limited(&self) -> Option<T>;
}

impl<T: Copy> Limited<T> for T {
    fn limited(&self) -> Option<T> {
        Some(*self)
    }
}

impl<T: Copy> Limited<T> for Option<T> {
    fn limited(&self) -> Option<T> {
        *self
    }
}

/// Ok when `value` is unset or lies in `range`, else an error naming `setting`.
///
/// # Errors
/// [`SettingsError::Invalid`] with the range and the value.
pub fn in_range<T: PartialOrd + Display + Copy>(
    setting: &str,
    value: &impl Limited<T>,
    range: RangeInclusive<T>,
) -> Result<(), SettingsError> {
    match value.limited() {
        Some(v) if !range.contains(&v) => Err(SettingsError::invalid(
            setting,
            format!("must be {}, not {v}", describe_range(&range)),
        )),
        _ => Ok(()),
    }
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
            /// An optional count.
            count: Option<u64> = None, in 1..=1_000;
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
        let mut outer = Outer::default();
        outer.inner.count = Some(0);
        assert!(
            outer
                .check("")
                .unwrap_err()
                .to_string()
                .contains("`inner.count`")
        );
        outer.inner.count = None;
        outer.ratio = f64::NAN;
        let err = outer.check("").unwrap_err().to_string();
        assert!(err.contains("`ratio`") && err.contains("0 to 1"), "{err}");
    }

    #[test]
    fn fields_carry_docs_limits_and_sections() {
        let fields = Outer::fields();
        assert_eq!(fields[0].name, "inner");
        assert_eq!(fields[0].fields.len(), 2);
        assert_eq!(fields[0].fields[0].limits.as_deref(), Some("1 to 65535"));
        assert_eq!(fields[0].fields[1].doc.trim(), "An optional count.");
        assert!(fields[1].fields.is_empty());
    }
}
