//! Recognising a QoS 1/2 message the broker sends again although its reading is already
//! counted: ingest logged it, then stopped or lost the connection before the broker got the
//! acknowledgement.
//!
//! MQTT resends an unacknowledged message with the DUP flag and its old packet id, and reuses
//! an id only after the message was acknowledged. So ingest remembers, per packet id, a digest
//! of topic and payload of the last reading logged under it (rebuilt from the window log after
//! a restart). A message with DUP whose packet id maps to its own digest is a redelivery: it is
//! acknowledged and skipped. A message without DUP is always new and takes over its id.
//!
//! When the broker lost the session, packet ids start over and the table is cleared. A message
//! never logged (rejected, or lost with a torn tail) is not in the table and is processed
//! again, which is right. The one confusion left is in the crate README (Limits).

use hashbrown::HashMap;
use rumqttc::{Publish, QoS};

/// 64-bit FNV-1a over topic, a separator, and payload: stable across builds and versions,
/// which a digest stored on disk must be.
pub fn digest(topic: &str, payload: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &byte in topic.as_bytes().iter().chain(&[0xff]).chain(payload) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// How a QoS 1/2 message was delivered, as logged with its reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// MQTT packet id.
    pub pkid: u16,
    /// [`digest`] of topic and payload.
    pub digest: u64,
}

impl Delivery {
    /// `None` for QoS 0, which the broker never resends.
    pub fn of(publish: &Publish) -> Option<Self> {
        (publish.qos != QoS::AtMostOnce).then(|| Delivery {
            pkid: publish.pkid,
            digest: digest(&publish.topic, &publish.payload),
        })
    }
}

/// Packet id -> digest of the last reading logged under it, in the broker's current session.
#[derive(Debug, Default)]
pub struct Redeliveries {
    last: HashMap<u16, u64>,
}

impl Redeliveries {
    /// True when a message delivered so, with this DUP flag, was already logged.
    pub fn is_redelivery(&self, dup: bool, d: Delivery) -> bool {
        dup && d.pkid != 0 && self.last.get(&d.pkid) == Some(&d.digest)
    }

    /// A reading delivered so was logged.
    pub fn logged(&mut self, d: Delivery) {
        if d.pkid != 0 {
            self.last.insert(d.pkid, d.digest);
        }
    }

    /// The broker started a new session: old packet ids mean nothing.
    pub fn clear(&mut self) {
        self.last.clear();
    }

    /// Packet ids remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_separates_topic_from_payload() {
        // Fixed value: the digest is stored on disk and must not change between versions.
        assert_eq!(digest("a", b"b"), 0xe57d_a319_03de_37b1);
        assert_eq!(
            digest("machines/A/scrap", b"{}"),
            digest("machines/A/scrap", b"{}")
        );
        assert_ne!(digest("ab", b"c"), digest("a", b"bc"));
        assert_ne!(digest("t", b"1"), digest("t", b"2"));
    }

    #[test]
    fn only_a_dup_with_the_logged_digest_is_a_redelivery() {
        let mut table = Redeliveries::default();
        let at = |pkid, digest| Delivery { pkid, digest };
        let d = digest("machines/A/scrap", b"{\"value\":1}");
        assert!(!table.is_redelivery(true, at(7, d)), "never logged");
        table.logged(at(7, d));
        assert!(table.is_redelivery(true, at(7, d)));
        assert!(
            !table.is_redelivery(false, at(7, d)),
            "no DUP: a new message"
        );
        assert!(!table.is_redelivery(true, at(7, d ^ 1)), "other content");
        assert!(!table.is_redelivery(true, at(8, d)), "other packet id");
        // The id is reused for another message, which is then redelivered.
        let e = digest("machines/A/scrap", b"{\"value\":2}");
        table.logged(at(7, e));
        assert!(!table.is_redelivery(true, at(7, d)));
        assert!(table.is_redelivery(true, at(7, e)));
        table.clear();
        assert!(!table.is_redelivery(true, at(7, e)), "a new session");
    }
}
