//! A service's Prometheus metrics, declared once with [`metrics!`](crate::metrics!) and served
//! as text on `/metrics`.

pub use prometheus_client::registry::Registry;

/// Declares a metrics struct from one list: each field with its type, its name after the
/// prefix, and its help text, which is also its doc; a type without a useful default (a
/// histogram's buckets) gives its value after the help. `new()` registers every metric and
/// `render()` shows them; cloning shares the values.
#[macro_export]
macro_rules! metrics {
    ($(#[doc = $doc:literal])* pub struct $name:ident prefix $prefix:literal {
        $($field:ident: $kind:ty = $metric:literal, $help:literal $(, $value:expr)?;)+
    }) => {
        $(#[doc = $doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            registry: ::std::sync::Arc<$crate::metrics::Registry>,
            $(#[doc = concat!($help, ".")]
            pub $field: $kind,)+
        }

        impl $name {
            #[doc = concat!("Creates the metrics, registered under the `", $prefix, "_` prefix.")]
            pub fn new() -> Self {
                let mut registry = $crate::metrics::Registry::with_prefix($prefix);
                $(let $field: $kind = $crate::metrics!(@value $($value)?);
                registry.register($metric, $help, $field.clone());)+
                let registry = ::std::sync::Arc::new(registry);
                Self { registry, $($field,)+ }
            }

            /// The metrics in the Prometheus/OpenMetrics text format.
            pub fn render(&self) -> String {
                $crate::metrics::render(&self.registry)
            }
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
    (@value) => { ::std::default::Default::default() };
    (@value $value:expr) => { $value };
}

/// `registry` in the Prometheus/OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail; an Err would only come from a metric's encoder.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}
