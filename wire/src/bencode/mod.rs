//! Bencode (BEP 3): a strict decoder that keeps the raw bytes of every value,
//! and an encoder.
//!
//! The decoder borrows from its input: every [`Node`] carries the exact bytes
//! it was parsed from, so the info-hash is SHA-1 over the original `info`
//! bytes, whatever the encoder that made them did. It is strict where
//! leniency would let two parties disagree about a document (non-canonical
//! integers and lengths, duplicate keys, trailing bytes) and bounded by
//! [`Limits`](crate::Limits) everywhere else.

mod decode;
mod encode;

pub use decode::{decode, decode_prefix};
pub use encode::{encode, Encoder, OwnedValue};

use thiserror::Error;

/// One decoded value together with the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    /// The value.
    pub value: Value<'a>,
    /// The exact input bytes of this value, including its delimiters.
    pub raw: &'a [u8],
}

/// A bencoded value borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i…e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l…e`
    List(Vec<Node<'a>>),
    /// `d…e`, entries in input order (keys are unique).
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Looks a key up in a dictionary; `None` for a missing key or a non-dict.
    pub fn get(&self, key: &[u8]) -> Option<&Node<'a>> {
        match &self.value {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if it is a valid UTF-8 byte string.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The dictionary entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Node<'a>)]> {
        match &self.value {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// Converts to an owned value (for re-encoding or keeping).
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.value {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(items) => {
                OwnedValue::List(items.iter().map(Node::to_owned_value).collect())
            }
            Value::Dict(entries) => OwnedValue::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Why a bencoded document was rejected. `at` is the byte offset of the
/// problem in the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    #[error("bencode: input ends early (at byte {at})")]
    UnexpectedEnd { at: usize },
    #[error("bencode: unexpected byte 0x{byte:02x} at byte {at}")]
    UnexpectedByte { at: usize, byte: u8 },
    #[error(
        "bencode: integer at byte {at} is not canonical (leading zero, -0, empty or sign misuse)"
    )]
    NonCanonicalInteger { at: usize },
    #[error("bencode: integer at byte {at} does not fit in 64 bits")]
    IntegerOverflow { at: usize },
    #[error("bencode: string length at byte {at} is not canonical")]
    NonCanonicalLength { at: usize },
    #[error("bencode: string at byte {at} declares {declared} bytes but only {remaining} remain")]
    LengthBeyondInput {
        at: usize,
        declared: u64,
        remaining: usize,
    },
    #[error("bencode: dictionary key at byte {at} is not a byte string")]
    KeyNotString { at: usize },
    #[error("bencode: duplicate dictionary key {key:?} (dictionary at byte {at})")]
    DuplicateKey { at: usize, key: String },
    #[error("bencode: nesting deeper than {limit} levels at byte {at}")]
    TooDeep { at: usize, limit: usize },
    #[error("bencode: more than {limit} values in one document")]
    TooManyItems { limit: usize },
    #[error("bencode: {count} bytes of trailing data after the value (at byte {at})")]
    TrailingData { at: usize, count: usize },
}
