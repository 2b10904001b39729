//! The few MQTT 3.1.1 packets the load generators write by hand (simulator's raw QoS 0
//! writer, loadtest's publisher): CONNECT, PUBLISH, PINGREQ, DISCONNECT, and the reading of
//! CONNACK and of a fixed header's remaining length.
//!
//! A general client (rumqttc) moves every publish through a channel, an owned packet and a
//! state machine; at load-test rates on two cores that costs more than the broker does. These
//! functions append packets to a caller's buffer, so a writer can encode thousands of publishes
//! into one reused `Vec` and write them with one system call. They do no I/O and allocate only
//! by growing `out`. The layout follows the MQTT 3.1.1 specification, sections 2.2 (fixed
//! header), 3.1 (CONNECT), 3.2 (CONNACK) and 3.3 (PUBLISH); the tests read every encoding
//! back with rumqttc's decoder.

/// A PINGREQ packet, sent to keep an otherwise quiet connection alive.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// A DISCONNECT packet: the broker drops the will and closes the connection after it has
/// handled everything sent before.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Length of a CONNACK packet in MQTT 3.1.1 (fixed header, flags, return code).
pub const CONNACK_LEN: usize = 4;

/// Packet type of PUBACK in the high nibble of a fixed header's first byte.
pub const PUBACK: u8 = 4;

/// The most bytes a remaining length may take (MQTT caps it at 268 435 455).
const MAX_LENGTH_BYTES: u8 = 4;

/// What is wrong with bytes read from the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The broker answered CONNECT with something that is not a CONNACK.
    #[error("expected a CONNACK, got {0:02x?}")]
    NotConnack([u8; CONNACK_LEN]),
    /// The broker refused the connection; the code is the CONNACK return code (4: bad
    /// username or password, 5: not authorised).
    #[error("the broker refused the connection (CONNACK return code {0})")]
    Refused(u8),
    /// A remaining length with a continuation bit on its fourth byte.
    #[error("remaining length longer than {MAX_LENGTH_BYTES} bytes")]
    LengthTooLong,
}

/// Appends an MQTT remaining-length varint: 7 bits per byte, least significant first, the
/// high bit set on every byte but the last.
pub fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        // The mask keeps 7 bits, so the cast cannot truncate.
        let mut byte = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Reads a remaining length one byte at a time, for a reader that takes bytes off a stream.
#[derive(Debug, Default, Clone)]
pub struct RemainingLength {
    value: usize,
    bytes: u8,
}

impl RemainingLength {
    /// Feeds the next byte; `Ok(Some(len))` once the last byte of the length has been read.
    ///
    /// # Errors
    /// [`WireError::LengthTooLong`] when a fourth byte still has its continuation bit set.
    pub fn push(&mut self, byte: u8) -> Result<Option<usize>, WireError> {
        self.value |= usize::from(byte & 0x7F) << (7 * u32::from(self.bytes));
        self.bytes += 1;
        if byte & 0x80 == 0 {
            return Ok(Some(self.value));
        }
        if self.bytes == MAX_LENGTH_BYTES {
            return Err(WireError::LengthTooLong);
        }
        Ok(None)
    }
}

/// The packet type (1 CONNECT ... 14 DISCONNECT) of a fixed header's first byte.
pub fn packet_type(header: u8) -> u8 {
    header >> 4
}

/// Appends a length-prefixed UTF-8 string; longer than 65 535 bytes it is cut there (every
/// caller's topics, ids and logins are far shorter: the settings checks bound them).
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s[..usize::from(len)]);
}

/// Encoded size of a string written by [`put_str`].
fn str_len(s: &[u8]) -> usize {
    2 + s.len().min(usize::from(u16::MAX))
}

/// Appends a CONNECT packet: MQTT 3.1.1, clean session, no will, `keep_alive_secs` (0 turns
/// the broker's keep-alive check off); with `login`, the username and, if given, the password.
pub fn encode_connect(
    out: &mut Vec<u8>,
    client_id: &str,
    keep_alive_secs: u16,
    login: Option<(&str, Option<&str>)>,
) {
    // Connect flags: 0x02 clean session, 0x80 username present, 0x40 password present.
    let mut flags = 0x02_u8;
    // Protocol name (2 + 4), level, flags, keep-alive (2).
    let mut length = 10 + str_len(client_id.as_bytes());
    if let Some((user, password)) = login {
        flags |= 0x80;
        length += str_len(user.as_bytes());
        if let Some(password) = password {
            flags |= 0x40;
            length += str_len(password.as_bytes());
        }
    }
    out.push(0x10);
    put_remaining_length(out, length);
    put_str(out, b"MQTT");
    out.extend_from_slice(&[0x04, flags]);
    out.extend_from_slice(&keep_alive_secs.to_be_bytes());
    put_str(out, client_id.as_bytes());
    if let Some((user, password)) = login {
        put_str(out, user.as_bytes());
        if let Some(password) = password {
            put_str(out, password.as_bytes());
        }
    }
}

/// Appends a PUBLISH packet: QoS 1 with `packet_id` when one is given, else QoS 0; retained
/// when `retain` is set.
pub fn encode_publish(
    out: &mut Vec<u8>,
    topic: &str,
    payload: &[u8],
    packet_id: Option<u16>,
    retain: bool,
) {
    let mut header = 0x30_u8;
    if packet_id.is_some() {
        header |= 0x02;
    }
    if retain {
        header |= 0x01;
    }
    out.push(header);
    let id_len = if packet_id.is_some() { 2 } else { 0 };
    put_remaining_length(out, str_len(topic.as_bytes()) + id_len + payload.len());
    put_str(out, topic.as_bytes());
    if let Some(id) = packet_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Checks the broker's answer to CONNECT.
///
/// # Errors
/// [`WireError::NotConnack`] when the bytes are not a CONNACK, [`WireError::Refused`] when
/// the return code is not 0 (accepted).
pub fn check_connack(connack: [u8; CONNACK_LEN]) -> Result<(), WireError> {
    if connack[0] != 0x20 || connack[1] != 0x02 {
        return Err(WireError::NotConnack(connack));
    }
    match connack[3] {
        0 => Ok(()),
        code => Err(WireError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use rumqttc::QoS;
    use rumqttc::mqttbytes::v4::Packet;

    use super::*;

    /// Decodes exactly one packet from `bytes` with rumqttc, failing on trailing bytes.
    fn decode(bytes: &[u8]) -> Packet {
        let mut stream = BytesMut::from(bytes);
        let packet = Packet::read(&mut stream, 1 << 20).unwrap();
        assert!(stream.is_empty(), "trailing bytes after {packet:?}");
        packet
    }

    fn length_bytes(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        put_remaining_length(&mut out, len);
        out
    }

    #[test]
    fn remaining_length_matches_the_specification_table() {
        // The boundaries of MQTT 3.1.1 table 2.4.
        assert_eq!(length_bytes(0), [0x00]);
        assert_eq!(length_bytes(127), [0x7F]);
        assert_eq!(length_bytes(128), [0x80, 0x01]);
        assert_eq!(length_bytes(321), [0xC1, 0x02]);
        assert_eq!(length_bytes(16_383), [0xFF, 0x7F]);
        assert_eq!(length_bytes(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(length_bytes(2_097_151), [0xFF, 0xFF, 0x7F]);
        assert_eq!(length_bytes(2_097_152), [0x80, 0x80, 0x80, 0x01]);
        assert_eq!(length_bytes(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F]);
    }

    #[test]
    fn remaining_length_reads_back_what_was_written() {
        for len in [0, 1, 127, 128, 321, 16_383, 16_384, 2_097_152, 268_435_455] {
            let mut reader = RemainingLength::default();
            let bytes = length_bytes(len);
            let (last, init) = bytes.split_last().unwrap();
            for &b in init {
                assert_eq!(reader.push(b), Ok(None), "length {len}");
            }
            assert_eq!(reader.push(*last), Ok(Some(len)));
        }
    }

    #[test]
    fn a_fifth_length_byte_is_an_error() {
        let mut reader = RemainingLength::default();
        for _ in 0..3 {
            assert_eq!(reader.push(0xFF), Ok(None));
        }
        assert_eq!(reader.push(0xFF), Err(WireError::LengthTooLong));
    }

    #[test]
    fn qos0_publish_is_byte_exact_and_read_back_by_rumqttc() {
        let mut out = Vec::new();
        encode_publish(&mut out, "a/b", b"x", None, false);
        assert_eq!(out, [0x30, 6, 0, 3, b'a', b'/', b'b', b'x']);
        for size in [0, 1, 100, 127, 128, 16_383, 16_384, 70_000] {
            let payload = vec![b'p'; size];
            let mut out = Vec::new();
            encode_publish(&mut out, "machines/A1/scrap", &payload, None, false);
            let Packet::Publish(publish) = decode(&out) else {
                panic!("not a publish")
            };
            assert_eq!(publish.topic, "machines/A1/scrap");
            assert_eq!(publish.qos, QoS::AtMostOnce);
            assert!(!publish.retain);
            assert_eq!(publish.payload.len(), size);
        }
    }

    #[test]
    fn qos1_retained_publish_carries_the_packet_id() {
        let mut out = Vec::new();
        encode_publish(&mut out, "a/b", b"x", Some(7), true);
        assert_eq!(out, [0x33, 8, 0, 3, b'a', b'/', b'b', 0, 7, b'x']);
        let Packet::Publish(publish) = decode(&out) else {
            panic!("not a publish")
        };
        assert_eq!(
            (publish.qos, publish.pkid, publish.retain),
            (QoS::AtLeastOnce, 7, true)
        );
        assert_eq!(&publish.payload[..], b"x");
    }

    #[test]
    fn connect_is_byte_exact_and_read_back_by_rumqttc() {
        let mut out = Vec::new();
        encode_connect(&mut out, "c", 0, None);
        assert_eq!(
            out,
            [
                0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'c'
            ]
        );
        let mut out = Vec::new();
        encode_connect(&mut out, "sim-1", 30, None);
        let Packet::Connect(connect) = decode(&out) else {
            panic!("not a connect")
        };
        assert!(connect.login.is_none());
        assert_eq!(
            (
                connect.client_id.as_str(),
                connect.keep_alive,
                connect.clean_session
            ),
            ("sim-1", 30, true)
        );
    }

    #[test]
    fn connect_with_login_is_read_back_by_rumqttc() {
        let mut out = Vec::new();
        encode_connect(&mut out, "sim-2", 15, Some(("A1", Some("pw-\u{e9}"))));
        let Packet::Connect(connect) = decode(&out) else {
            panic!("not a connect")
        };
        let login = connect.login.expect("login");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("A1", "pw-\u{e9}")
        );
        let mut out = Vec::new();
        encode_connect(&mut out, "sim-3", 15, Some(("B1", None)));
        let Packet::Connect(connect) = decode(&out) else {
            panic!("not a connect")
        };
        assert_eq!(connect.login.expect("login").username, "B1");
    }

    #[test]
    fn fixed_packets_are_read_back_by_rumqttc() {
        assert!(matches!(decode(&PINGREQ), Packet::PingReq));
        assert!(matches!(decode(&DISCONNECT), Packet::Disconnect));
    }

    #[test]
    fn connack_codes_are_told_apart() {
        assert_eq!(check_connack([0x20, 0x02, 0x00, 0x00]), Ok(()));
        // Session present does not matter to a clean-session writer.
        assert_eq!(check_connack([0x20, 0x02, 0x01, 0x00]), Ok(()));
        assert_eq!(
            check_connack([0x20, 0x02, 0x00, 0x05]),
            Err(WireError::Refused(5))
        );
        assert_eq!(
            check_connack([0xD0, 0x00, 0x20, 0x02]),
            Err(WireError::NotConnack([0xD0, 0x00, 0x20, 0x02]))
        );
    }

    #[test]
    fn packet_type_reads_the_high_nibble() {
        assert_eq!(packet_type(0x40), PUBACK);
        assert_eq!(packet_type(PINGREQ[0]), 12);
        assert_eq!(packet_type(0x33), 3);
    }
}
