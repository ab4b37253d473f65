//! The bencode encoder: an owned value tree for documents built in memory,
//! and a streaming [`Encoder`] for hot paths (tracker responses) that writes
//! straight into a buffer.

use std::collections::BTreeMap;

/// An owned bencoded value. Dictionaries are `BTreeMap`s, so encoding always
/// produces sorted keys, as BEP 3 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string from anything byte-like.
    pub fn bytes(b: impl AsRef<[u8]>) -> Self {
        OwnedValue::Bytes(b.as_ref().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, OwnedValue)>) -> Self {
        OwnedValue::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut Encoder::new(&mut out));
        out
    }

    fn write(&self, enc: &mut Encoder<'_>) {
        match self {
            OwnedValue::Int(i) => enc.int(*i),
            OwnedValue::Bytes(b) => enc.bytes(b),
            OwnedValue::List(items) => {
                enc.begin_list();
                for item in items {
                    item.write(enc);
                }
                enc.end();
            }
            OwnedValue::Dict(entries) => {
                enc.begin_dict();
                for (k, v) in entries {
                    enc.bytes(k);
                    v.write(enc);
                }
                enc.end();
            }
        }
    }
}

/// Encodes a value (shorthand for [`OwnedValue::to_bytes`]).
pub fn encode(value: &OwnedValue) -> Vec<u8> {
    value.to_bytes()
}

/// A streaming encoder. The caller writes dictionary keys in sorted order;
/// the type does not check it, so prefer [`OwnedValue`] unless the path is
/// hot and the keys are fixed literals.
pub struct Encoder<'b> {
    out: &'b mut Vec<u8>,
}

impl<'b> Encoder<'b> {
    pub fn new(out: &'b mut Vec<u8>) -> Self {
        Encoder { out }
    }

    pub fn int(&mut self, value: i64) {
        self.out.push(b'i');
        self.out.extend_from_slice(value.to_string().as_bytes());
        self.out.push(b'e');
    }

    pub fn bytes(&mut self, value: &[u8]) {
        self.out
            .extend_from_slice(value.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(value);
    }

    pub fn begin_list(&mut self) {
        self.out.push(b'l');
    }

    pub fn begin_dict(&mut self) {
        self.out.push(b'd');
    }

    /// Ends the innermost list or dictionary.
    pub fn end(&mut self) {
        self.out.push(b'e');
    }

    /// A `key`/integer dictionary entry.
    pub fn key_int(&mut self, key: &[u8], value: i64) {
        self.bytes(key);
        self.int(value);
    }

    /// A `key`/byte-string dictionary entry.
    pub fn key_bytes(&mut self, key: &[u8], value: &[u8]) {
        self.bytes(key);
        self.bytes(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted_canonical_form() {
        let v = OwnedValue::dict([
            ("zeta", OwnedValue::Int(-3)),
            (
                "alpha",
                OwnedValue::List(vec![OwnedValue::bytes("x"), OwnedValue::Int(0)]),
            ),
        ]);
        assert_eq!(v.to_bytes(), b"d5:alphal1:xi0ee4:zetai-3ee".to_vec());
    }
}
