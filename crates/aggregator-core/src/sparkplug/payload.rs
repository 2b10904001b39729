//! The Sparkplug B payload as protobuf messages: the part of the Eclipse Tahu schema that
//! scrap-pulse reads and writes. Fields it does not declare (metadata, properties, data sets,
//! templates, a payload's `uuid` and `body`) are skipped when decoding, as protobuf does with
//! any unknown field.

use prost::Message;

/// Metric names Sparkplug reserves.
pub mod names {
    /// The birth/death sequence number in NBIRTH and NDEATH.
    pub const BD_SEQ: &str = "bdSeq";
    /// A host asks an edge node for new births with this metric set to `true` in an NCMD.
    pub const REBIRTH: &str = "Node Control/Rebirth";
}

/// One Sparkplug B message body.
#[derive(Clone, PartialEq, Message)]
pub struct Payload {
    /// When the message was made, ms since the epoch.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The metrics it carries.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// The edge node's message sequence number, 0..=255; absent in NDEATH.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
}

/// One metric of a payload.
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    /// Its name; in DATA often left out in favour of the alias.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The number a birth gave the name.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// When the value was taken, ms since the epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// [`DataType`] as a number; required in births, optional in data.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// A value recorded earlier and sent late: history, not a live value.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// A value not to be stored.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The metric has no value.
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Its value, in the field its datatype uses.
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// The value fields of a metric (data sets, templates and extensions are not read).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8, Int16, Int32 (two's complement), UInt8, UInt16.
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64 (two's complement), UInt32, UInt64, DateTime.
    #[prost(uint64, tag = "11")]
    Long(u64),
    /// Float.
    #[prost(float, tag = "12")]
    Float(f32),
    /// Double.
    #[prost(double, tag = "13")]
    Double(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    Boolean(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    String(String),
    /// Bytes, File.
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// The datatypes of the numbers Sparkplug defines; every other datatype is not a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 1
    Int8,
    /// 2
    Int16,
    /// 3
    Int32,
    /// 4
    Int64,
    /// 5
    UInt8,
    /// 6
    UInt16,
    /// 7
    UInt32,
    /// 8
    UInt64,
    /// 9
    Float,
    /// 10
    Double,
}

impl DataType {
    /// The numeric datatype `code` stands for, if it is one.
    pub fn numeric(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Int8,
            2 => Self::Int16,
            3 => Self::Int32,
            4 => Self::Int64,
            5 => Self::UInt8,
            6 => Self::UInt16,
            7 => Self::UInt32,
            8 => Self::UInt64,
            9 => Self::Float,
            10 => Self::Double,
            _ => return None,
        })
    }

    /// The number of `value` read as this datatype, or `None` when the value is not in the
    /// field this datatype uses or not finite. Narrow integers are read from their low bits,
    /// so a sign-extended and a zero-extended negative Int8 read the same.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    pub fn number(self, value: &Value) -> Option<f64> {
        let number = match (self, value) {
            (Self::Int8, Value::Int(v)) => f64::from(*v as u8 as i8),
            (Self::Int16, Value::Int(v)) => f64::from(*v as u16 as i16),
            (Self::Int32, Value::Int(v)) => f64::from(*v as i32),
            (Self::UInt8, Value::Int(v)) => f64::from(*v as u8),
            (Self::UInt16, Value::Int(v)) => f64::from(*v as u16),
            // The specification puts UInt32 in the 64-bit field (Tahu does); some writers
            // use the 32-bit one.
            (Self::UInt32, Value::Long(v)) => f64::from(u32::try_from(*v).ok()?),
            (Self::UInt32, Value::Int(v)) => f64::from(*v),
            (Self::Int64, Value::Long(v)) => *v as i64 as f64,
            (Self::UInt64, Value::Long(v)) => *v as f64,
            (Self::Float, Value::Float(v)) => f64::from(*v),
            (Self::Double, Value::Double(v)) => *v,
            _ => return None,
        };
        number.is_finite().then_some(number)
    }
}

/// The NCMD payload that asks an edge node to send its births again.
pub fn rebirth_request(now_ms: u64) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some(names::REBIRTH.into()),
            timestamp: Some(now_ms),
            datatype: Some(11),
            value: Some(Value::Boolean(true)),
            ..Metric::default()
        }],
        seq: None,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebirth_request_decodes_to_the_rebirth_metric_set_to_true() {
        let bytes = rebirth_request(1_796_601_600_000);
        let payload = Payload::decode(bytes.as_slice()).unwrap();
        let metric = &payload.metrics[0];
        assert_eq!(metric.name.as_deref(), Some(names::REBIRTH));
        assert_eq!(metric.datatype, Some(11));
        assert_eq!(metric.value, Some(Value::Boolean(true)));
        assert_eq!(payload.timestamp, Some(1_796_601_600_000));
    }

    #[test]
    fn numbers_are_read_by_their_datatype() {
        let minus_one_sign_extended = Value::Int(u32::MAX);
        let minus_one_zero_extended = Value::Int(0xFF);
        assert_eq!(DataType::Int8.number(&minus_one_sign_extended), Some(-1.0));
        assert_eq!(DataType::Int8.number(&minus_one_zero_extended), Some(-1.0));
        assert_eq!(
            DataType::UInt8.number(&minus_one_zero_extended),
            Some(255.0)
        );
        assert_eq!(DataType::Int16.number(&Value::Int(0xFFFE)), Some(-2.0));
        assert_eq!(
            DataType::Int32.number(&Value::Int(u32::MAX - 2)),
            Some(-3.0)
        );
        assert_eq!(
            DataType::UInt32.number(&Value::Int(u32::MAX)),
            Some(4_294_967_295.0)
        );
        assert_eq!(DataType::Int64.number(&Value::Long(u64::MAX)), Some(-1.0));
        assert_eq!(DataType::UInt64.number(&Value::Long(7)), Some(7.0));
        assert_eq!(DataType::Float.number(&Value::Float(2.5)), Some(2.5));
        assert_eq!(DataType::Double.number(&Value::Double(0.1)), Some(0.1));
    }

    #[test]
    fn a_value_in_another_field_than_its_datatype_or_not_finite_is_no_number() {
        assert_eq!(DataType::Double.number(&Value::Float(1.0)), None);
        assert_eq!(DataType::Int32.number(&Value::Long(1)), None);
        assert_eq!(DataType::Double.number(&Value::String("1".into())), None);
        assert_eq!(DataType::Double.number(&Value::Double(f64::NAN)), None);
        assert_eq!(DataType::Float.number(&Value::Float(f32::INFINITY)), None);
        assert_eq!(DataType::numeric(11), None, "Boolean");
        assert_eq!(DataType::numeric(12), None, "String");
        assert_eq!(DataType::numeric(0), None);
    }
}
