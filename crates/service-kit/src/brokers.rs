//! Several brokers in `mqtt.host`: the comma-separated list (`a,b:1884`), parsed once, the
//! rumqttc options and reconnect pacing of a connection, and its round-robin fail-over.
//!
//! rumqttc has no setter for the broker address of an `MqttOptions`, so fail-over builds the
//! options anew for the next broker (through the binary's own builder) and puts them on the
//! event loop, whose state (queued requests, QoS 1 in flight) stays as it was. The next poll
//! connects there with the same client id and session flag, so a persistent session resumes
//! on a broker that shares it (a NATS cluster). With TLS the server name is the host in use:
//! rumqttc takes it from the broker address.

use std::fmt;
use std::time::Duration;

use rumqttc::{EventLoop, MqttOptions};

use crate::{Backoff, MqttConfig, SettingsError};

/// One broker of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `mqtt.host`: comma-separated `host`, `host:port` or `[v6]:port` entries; a
/// missing port is `default_port`.
///
/// # Errors
/// [`SettingsError::Invalid`] naming `mqtt.host` and the bad entry.
pub fn parse_hosts(list: &str, default_port: u16) -> Result<Vec<BrokerAddr>, SettingsError> {
    let mut brokers = Vec::new();
    for (n, entry) in list.split(',').map(str::trim).enumerate() {
        let bad =
            |why: &str| SettingsError::invalid("mqtt.host", format!("entry {}: {why}", n + 1));
        if entry.is_empty() {
            return Err(if n == 0 && !list.contains(',') {
                SettingsError::invalid("mqtt.host", "must not be empty")
            } else {
                bad("is empty")
            });
        }
        let (host, port) =
            if let Some(rest) = entry.strip_prefix('[') {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or_else(|| bad(&format!("`{entry}` has no closing `]`")))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(after.strip_prefix(':').ok_or_else(|| {
                            bad(&format!("`{entry}`: expected `:port` after `]`"))
                        })?),
                    ),
                }
            } else {
                match entry.split_once(':') {
                    // Two colons or more: an IPv6 address without a port.
                    Some((_, rest)) if rest.contains(':') => (entry, None),
                    Some((host, port)) => (host, Some(port)),
                    None => (entry, None),
                }
            };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad(&format!("`{entry}` has no usable host")));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("`{entry}`: port must be 1 to 65535")))?,
        };
        brokers.push(BrokerAddr {
            host: host.to_owned(),
            port,
        });
    }
    Ok(brokers)
}

/// Builds a connection's options for one broker.
pub type OptionsFor = Box<dyn Fn(&BrokerAddr) -> MqttOptions + Send + Sync>;

/// A connection's broker list and the broker in use.
pub struct Failover {
    brokers: Vec<BrokerAddr>,
    current: usize,
    options_for: OptionsFor,
}

impl fmt::Debug for Failover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("brokers", &self.brokers)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Failover {
    /// Starts at the first broker of `brokers` (which must not be empty: the settings check
    /// guarantees one); `options_for` builds the full options for a broker.
    pub fn new(brokers: Vec<BrokerAddr>, options_for: OptionsFor) -> Self {
        Self {
            brokers,
            current: 0,
            options_for,
        }
    }

    /// Options for the broker in use, to create the client with.
    pub fn options(&self) -> MqttOptions {
        (self.options_for)(self.current())
    }

    /// The broker in use.
    pub fn current(&self) -> &BrokerAddr {
        &self.brokers[self.current]
    }

    /// Position of the broker in use in the list (0 = first), for `/metrics`.
    pub fn index(&self) -> usize {
        self.current
    }

    /// After a connection error: points `event_loop` at the next broker, round-robin.
    /// Returns the new broker, or `None` with a single broker (nothing to change).
    pub fn advance(&mut self, event_loop: &mut EventLoop) -> Option<&BrokerAddr> {
        if self.brokers.len() < 2 {
            return None;
        }
        self.current = (self.current + 1) % self.brokers.len();
        event_loop.mqtt_options = (self.options_for)(&self.brokers[self.current]);
        Some(&self.brokers[self.current])
    }
}

impl MqttConfig {
    /// rumqttc options for `broker`: client id, keep-alive, packet limit, login and TLS; each
    /// service adds its session and queues.
    pub fn options_at(&self, broker: &BrokerAddr) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &broker.host, broker.port);
        options.set_keep_alive(Duration::from_secs(self.settings.keep_alive_secs));
        let max_packet = self.settings.max_packet_bytes;
        options.set_max_packet_size(max_packet, max_packet);
        self.security.apply_to(&mut options);
        options
    }

    /// The broker list from the first, each broker's options built by `options`.
    pub fn failover(
        &self,
        options: impl Fn(&BrokerAddr) -> MqttOptions + Send + Sync + 'static,
    ) -> Failover {
        Failover::new(self.brokers.clone(), Box::new(options))
    }

    /// The reconnect pacing.
    pub fn backoff(&self) -> Backoff {
        let ms = Duration::from_millis;
        let settings = &self.settings;
        Backoff::new(ms(settings.reconnect_min_ms), ms(settings.reconnect_max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> BrokerAddr {
        BrokerAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn lists_parse_with_default_ports() {
        assert_eq!(
            parse_hosts("localhost", 1883).unwrap(),
            [addr("localhost", 1883)]
        );
        assert_eq!(
            parse_hosts("a, b:1884 ,10.0.0.3:1", 1999).unwrap(),
            [addr("a", 1999), addr("b", 1884), addr("10.0.0.3", 1)]
        );
        assert_eq!(
            parse_hosts("::1,[fe80::1]:7,[::2]", 5).unwrap(),
            [addr("::1", 5), addr("fe80::1", 7), addr("::2", 5)]
        );
        assert_eq!(addr("::1", 5).to_string(), "[::1]:5");
        assert_eq!(addr("a", 5).to_string(), "a:5");
    }

    #[test]
    fn bad_entries_name_mqtt_host_and_the_entry() {
        for (list, want) in [
            (" ", "must not be empty"),
            ("a,,b", "entry 2: is empty"),
            ("a,", "entry 2: is empty"),
            ("a:0", "entry 1: `a:0`: port must be 1 to 65535"),
            ("a,b:x", "entry 2: `b:x`: port must be 1 to 65535"),
            ("a,b:70000", "entry 2"),
            (":1883", "no usable host"),
            ("[::1", "no closing"),
            ("[::1]x", "expected `:port`"),
            ("a b", "no usable host"),
        ] {
            let err = parse_hosts(list, 1883).unwrap_err().to_string();
            assert!(
                err.contains("`mqtt.host`") && err.contains(want),
                "{list:?}: {err}"
            );
        }
    }

    #[test]
    fn failover_goes_round_robin_and_keeps_the_other_settings() {
        let brokers = parse_hosts("a,b:2", 1).unwrap();
        let mut failover = Failover::new(
            brokers,
            Box::new(|b| {
                let mut o = MqttOptions::new("id-1", &b.host, b.port);
                o.set_clean_session(false);
                o
            }),
        );
        let (_client, mut event_loop) = rumqttc::AsyncClient::new(failover.options(), 4);
        assert_eq!(event_loop.mqtt_options.broker_address(), ("a".into(), 1));
        assert_eq!(failover.advance(&mut event_loop), Some(&addr("b", 2)));
        assert_eq!(event_loop.mqtt_options.broker_address(), ("b".into(), 2));
        assert!(!event_loop.mqtt_options.clean_session());
        assert_eq!(event_loop.mqtt_options.client_id(), "id-1");
        assert_eq!(failover.index(), 1);
        failover.advance(&mut event_loop);
        assert_eq!(failover.current(), &addr("a", 1));
        let mut single = Failover::new(
            parse_hosts("a", 1).unwrap(),
            Box::new(|b| MqttOptions::new("x", &b.host, b.port)),
        );
        assert_eq!(single.advance(&mut event_loop), None);
    }
}
