//! Intentionally empty: this crate only holds the end-to-end tests in `tests/it`, which run the
//! services as the real binaries (found with `test_support::service_binary`) against a real
//! broker and talk to them only through MQTT and HTTP, as a user would. No service crate is a
//! dependency here, and no service crate depends on another one.
