//! Fixed-size identifiers: the info-hash and the peer id.

use std::fmt;

/// SHA-1 of the bencoded `info` dictionary (BEP 3, v1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InfoHash(pub [u8; 20]);

/// The 20-byte id a peer picks for itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub [u8; 20]);

macro_rules! id20 {
    ($t:ident) => {
        impl $t {
            /// Lowercase hexadecimal, 40 characters.
            pub fn to_hex(&self) -> String {
                hex40(&self.0)
            }

            /// Parses 40 hexadecimal digits (either case).
            pub fn from_hex(text: &str) -> Option<Self> {
                let bytes = text.as_bytes();
                if bytes.len() != 40 {
                    return None;
                }
                let mut out = [0u8; 20];
                for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    let hi = hex_digit(*pair.first()?)?;
                    let lo = hex_digit(*pair.get(1)?)?;
                    *slot = hi << 4 | lo;
                }
                Some($t(out))
            }

            /// From a slice that must be exactly 20 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 20]>::try_from(bytes).ok().map($t)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.to_hex())
            }
        }
    };
}

id20!(InfoHash);
id20!(PeerId);

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of any byte string.
pub fn hex40(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 15] {
            s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = InfoHash([0xab; 20]);
        assert_eq!(id.to_hex(), "ab".repeat(20));
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(id));
        assert_eq!(InfoHash::from_hex("abc"), None);
        assert_eq!(InfoHash::from_hex(&"zz".repeat(20)), None);
    }
}
