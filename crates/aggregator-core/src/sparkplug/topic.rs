//! Sparkplug B topics: `spBv1.0/{group}/{type}/{node}[/{device}]`, and a host application's
//! `spBv1.0/STATE/{host}`.

/// The namespace every Sparkplug B topic starts with.
pub const NAMESPACE: &str = "spBv1.0";

/// What a message on a Sparkplug topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// An edge node's birth certificate: its metrics, their aliases and `bdSeq`.
    NodeBirth,
    /// An edge node's death certificate (its MQTT will), with the `bdSeq` of its birth.
    NodeDeath,
    /// An edge node's own metrics.
    NodeData,
    /// A command to an edge node.
    NodeCommand,
    /// A device's birth certificate, sent through its edge node.
    DeviceBirth,
    /// A device's death.
    DeviceDeath,
    /// A device's metrics.
    DeviceData,
    /// A command to a device.
    DeviceCommand,
}

impl MessageType {
    /// The type a topic level names.
    fn parse(level: &str) -> Option<Self> {
        Some(match level {
            "NBIRTH" => Self::NodeBirth,
            "NDEATH" => Self::NodeDeath,
            "NDATA" => Self::NodeData,
            "NCMD" => Self::NodeCommand,
            "DBIRTH" => Self::DeviceBirth,
            "DDEATH" => Self::DeviceDeath,
            "DDATA" => Self::DeviceData,
            "DCMD" => Self::DeviceCommand,
            _ => return None,
        })
    }

    /// Its topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeBirth => "NBIRTH",
            Self::NodeDeath => "NDEATH",
            Self::NodeData => "NDATA",
            Self::NodeCommand => "NCMD",
            Self::DeviceBirth => "DBIRTH",
            Self::DeviceDeath => "DDEATH",
            Self::DeviceData => "DDATA",
            Self::DeviceCommand => "DCMD",
        }
    }

    /// Whether a device id follows the node id.
    pub fn names_a_device(self) -> bool {
        matches!(
            self,
            Self::DeviceBirth | Self::DeviceDeath | Self::DeviceData | Self::DeviceCommand
        )
    }
}

/// A Sparkplug topic, its levels borrowed from the topic text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'t> {
    /// A message of an edge node or one of its devices.
    Edge {
        /// The group the node belongs to.
        group: &'t str,
        /// What the message is.
        kind: MessageType,
        /// The edge node.
        node: &'t str,
        /// The device, for device messages.
        device: Option<&'t str>,
    },
    /// A host application's state (JSON, never protobuf).
    State {
        /// The host application's id.
        host: &'t str,
    },
}

impl<'t> Topic<'t> {
    /// The topic `text` is, or `None` when it is not a Sparkplug B topic of a known shape
    /// (an empty level, a device on a node message or none on a device message).
    pub fn parse(text: &'t str) -> Option<Self> {
        let mut levels = text.split('/');
        if levels.next()? != NAMESPACE {
            return None;
        }
        let levels: Vec<&str> = levels.collect();
        if levels.iter().any(|level| level.is_empty()) {
            return None;
        }
        match levels.as_slice() {
            ["STATE", host] => Some(Self::State { host }),
            [group, kind, node, rest @ ..] => {
                let kind = MessageType::parse(kind)?;
                let device = match (kind.names_a_device(), rest) {
                    (false, []) => None,
                    (true, [device]) => Some(*device),
                    _ => return None,
                };
                Some(Self::Edge {
                    group,
                    kind,
                    node,
                    device,
                })
            }
            _ => None,
        }
    }
}

/// The topic of a message of `kind` for `node` (and `device`) in `group`.
pub fn edge_topic(group: &str, kind: MessageType, node: &str, device: Option<&str>) -> String {
    match device {
        Some(device) => format!("{NAMESPACE}/{group}/{}/{node}/{device}", kind.as_str()),
        None => format!("{NAMESPACE}/{group}/{}/{node}", kind.as_str()),
    }
}

/// The topic a host application publishes its state on.
pub fn state_topic(host: &str) -> String {
    format!("{NAMESPACE}/STATE/{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_topics_name_group_type_node_and_device() {
        assert_eq!(
            Topic::parse("spBv1.0/Plant1/DDATA/Press-Line/A1"),
            Some(Topic::Edge {
                group: "Plant1",
                kind: MessageType::DeviceData,
                node: "Press-Line",
                device: Some("A1"),
            })
        );
        assert_eq!(
            Topic::parse("spBv1.0/Plant1/NBIRTH/Press-Line"),
            Some(Topic::Edge {
                group: "Plant1",
                kind: MessageType::NodeBirth,
                node: "Press-Line",
                device: None,
            })
        );
        assert_eq!(
            Topic::parse("spBv1.0/STATE/scrap-pulse"),
            Some(Topic::State {
                host: "scrap-pulse"
            })
        );
    }

    #[test]
    fn other_shapes_are_not_sparkplug_topics() {
        for text in [
            "spBv1.0/Plant1/NDATA/Press-Line/A1",
            "spBv1.0/Plant1/DDATA/Press-Line",
            "spBv1.0/Plant1/XDATA/Press-Line",
            "spBv1.0/Plant1/NDATA//",
            "spBv1.0/Plant1/NDATA/",
            "spBv1.0/STATE",
            "spAv1.0/Plant1/NDATA/Press-Line",
            "machines/A1/scrap",
            "STATE/scrap-pulse",
        ] {
            assert_eq!(Topic::parse(text), None, "{text}");
        }
    }

    #[test]
    fn built_topics_parse_back() {
        let topic = edge_topic("G", MessageType::NodeCommand, "N", None);
        assert_eq!(topic, "spBv1.0/G/NCMD/N");
        let topic = edge_topic("G", MessageType::DeviceBirth, "N", Some("D"));
        assert_eq!(
            Topic::parse(&topic),
            Some(Topic::Edge {
                group: "G",
                kind: MessageType::DeviceBirth,
                node: "N",
                device: Some("D"),
            })
        );
        assert_eq!(
            Topic::parse(&state_topic("h")),
            Some(Topic::State { host: "h" })
        );
    }
}
