//! Recognising a QoS 1/2 message the broker sends again although its reading is already
//! counted: ingest logged it, then stopped or lost the connection before the broker got the
//! acknowledgement.
//!
//! MQTT resends an unacknowledged message with the DUP flag set and the packet id it had
//! before; a packet id is reused for another message only after the first one was
//! acknowledged. So ingest remembers, per packet id, a digest of the topic and payload of the
//! last reading it logged under that id (rebuilt from the window log after a restart). An
//! incoming message is a redelivery, and skipped (but acknowledged), when
//!
//! - its DUP flag is set, and
//! - the last reading logged under its packet id has the same digest.
//!
//! A message without DUP is always new: it is counted and takes over its packet id.
//!
//! Limits: when the broker lost the session (CONNACK without session present), packet ids
//! start over and the table is cleared. A message that ingest never logged (it was rejected, or
//! it died before the batch was synced) is not in the table and is processed normally. The one
//! confusion left: the broker reuses a packet id for a message with a byte-identical topic and
//! payload, and that message is redelivered before ingest logged it; Mosquitto hands out
//! packet ids in sequence, so the previous use of that id is 65 535 messages back.

use hashbrown::HashMap;

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

/// Packet id -> digest of the last reading logged under it, in the broker's current session.
#[derive(Debug, Default)]
pub struct Redeliveries {
    last: HashMap<u16, u64>,
}

impl Redeliveries {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when a message with these properties was already logged.
    pub fn is_redelivery(&self, dup: bool, pkid: u16, digest: u64) -> bool {
        dup && pkid != 0 && self.last.get(&pkid) == Some(&digest)
    }

    /// A reading was logged under `pkid`.
    pub fn logged(&mut self, pkid: u16, digest: u64) {
        if pkid != 0 {
            self.last.insert(pkid, digest);
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
        let mut table = Redeliveries::new();
        let d = digest("machines/A/scrap", b"{\"value\":1}");
        assert!(!table.is_redelivery(true, 7, d), "never logged");
        table.logged(7, d);
        assert!(table.is_redelivery(true, 7, d));
        assert!(!table.is_redelivery(false, 7, d), "no DUP: a new message");
        assert!(!table.is_redelivery(true, 7, d ^ 1), "other content");
        assert!(!table.is_redelivery(true, 8, d), "other packet id");
        // The id is reused for another message, which is then redelivered.
        let e = digest("machines/A/scrap", b"{\"value\":2}");
        table.logged(7, e);
        assert!(!table.is_redelivery(true, 7, d));
        assert!(table.is_redelivery(true, 7, e));
        table.clear();
        assert!(!table.is_redelivery(true, 7, e), "a new session");
    }
}
