//! The bencode decoder.
//!
//! Iterative in spirit but recursive in form: recursion depth is bounded by
//! `Limits::bencode_max_depth` before each descent, so the stack stays small
//! whatever the input.

use super::{BencodeError, Node, Value};
use crate::Limits;

/// Decodes exactly one value spanning the whole input.
pub fn decode<'a>(input: &'a [u8], limits: &Limits) -> Result<Node<'a>, BencodeError> {
    let (node, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(BencodeError::TrailingData {
            at: used,
            count: input.len() - used,
        });
    }
    Ok(node)
}

/// Decodes one value from the start of the input and returns it with the
/// number of bytes it used (BEP 9 metadata messages put raw data after a
/// bencoded header).
pub fn decode_prefix<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(Node<'a>, usize), BencodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let node = parser.value(0)?;
    Ok((node, parser.pos))
}

struct Parser<'a, 'l> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: &'l Limits,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd { at: self.pos })
    }

    fn span(&self, start: usize) -> &'a [u8] {
        self.input.get(start..self.pos).unwrap_or_default()
    }

    fn count_item(&mut self) -> Result<(), BencodeError> {
        self.items += 1;
        if self.items > self.limits.bencode_max_items {
            return Err(BencodeError::TooManyItems {
                limit: self.limits.bencode_max_items,
            });
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, BencodeError> {
        self.count_item()?;
        let start = self.pos;
        let value = match self.peek()? {
            b'i' => Value::Int(self.int()?),
            b'0'..=b'9' => Value::Bytes(self.bytes()?),
            b'l' => {
                self.descend(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Value::List(items)
            }
            b'd' => {
                self.descend(depth)?;
                Value::Dict(self.dict_entries(start, depth)?)
            }
            byte => return Err(BencodeError::UnexpectedByte { at: start, byte }),
        };
        Ok(Node {
            value,
            raw: self.span(start),
        })
    }

    /// Checks the depth bound and steps over the opening `l` or `d`.
    fn descend(&mut self, depth: usize) -> Result<(), BencodeError> {
        if depth >= self.limits.bencode_max_depth {
            return Err(BencodeError::TooDeep {
                at: self.pos,
                limit: self.limits.bencode_max_depth,
            });
        }
        self.pos += 1;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn dict_entries(
        &mut self,
        start: usize,
        depth: usize,
    ) -> Result<Vec<(&'a [u8], Node<'a>)>, BencodeError> {
        let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
        // Sorted input (the canonical form) is checked for duplicates as it
        // goes; unsorted dictionaries exist in the wild, so they are accepted
        // and checked for duplicates once at the end.
        let mut sorted = true;
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(BencodeError::KeyNotString { at: key_at });
            }
            self.count_item()?;
            let key = self.bytes()?;
            if let Some((last, _)) = entries.last() {
                if *last == key {
                    return Err(duplicate(start, key));
                }
                sorted &= *last < key;
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        if !sorted {
            let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            if let Some(pair) = keys.windows(2).find(|w| w.first() == w.get(1)) {
                return Err(duplicate(start, pair.first().copied().unwrap_or_default()));
            }
        }
        Ok(entries)
    }

    fn int(&mut self) -> Result<i64, BencodeError> {
        let at = self.pos;
        self.pos += 1; // 'i'
        let digits_start = self.pos;
        while self.peek()? != b'e' {
            self.pos += 1;
        }
        let text = self.span(digits_start);
        self.pos += 1; // 'e'
        parse_canonical_int(text, at)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let at = self.pos;
        let mut declared: u64 = 0;
        let mut digits = 0usize;
        loop {
            let byte = self.peek()?;
            match byte {
                b'0'..=b'9' => {
                    declared = declared
                        .checked_mul(10)
                        .and_then(|d| d.checked_add(u64::from(byte - b'0')))
                        .ok_or(BencodeError::NonCanonicalLength { at })?;
                    digits += 1;
                    self.pos += 1;
                }
                b':' => break,
                _ => return Err(BencodeError::UnexpectedByte { at: self.pos, byte }),
            }
        }
        if digits > 1 && self.input.get(at) == Some(&b'0') {
            return Err(BencodeError::NonCanonicalLength { at });
        }
        self.pos += 1; // ':'
        let remaining = self.input.len().saturating_sub(self.pos);
        // Checked before any slicing or allocation: a declared length is
        // only a claim.
        let len = usize::try_from(declared)
            .ok()
            .filter(|&len| len <= remaining)
            .ok_or(BencodeError::LengthBeyondInput {
                at,
                declared,
                remaining,
            })?;
        let start = self.pos;
        self.pos += len;
        Ok(self.span(start))
    }
}

fn duplicate(at: usize, key: &[u8]) -> BencodeError {
    BencodeError::DuplicateKey {
        at,
        key: String::from_utf8_lossy(key).into_owned(),
    }
}

/// Parses the digits of `i…e` in canonical form only: no leading zeros, no
/// `-0`, no empty integer, no `+`.
fn parse_canonical_int(text: &[u8], at: usize) -> Result<i64, BencodeError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let canonical = match digits {
        [] => false,
        [b'0'] => !negative,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return Err(BencodeError::NonCanonicalInteger { at });
    }
    let mut value: i64 = 0;
    for &digit in digits {
        let d = i64::from(digit - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if negative {
                    v.checked_sub(d)
                } else {
                    v.checked_add(d)
                }
            })
            .ok_or(BencodeError::IntegerOverflow { at })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(input: &[u8]) -> Result<Node<'_>, BencodeError> {
        decode(input, &Limits::DEFAULT)
    }

    #[test]
    fn decodes_every_type_and_keeps_spans() {
        let doc = b"d3:agei-42e4:infod1:xli1e2:hiee4:name3:bobe";
        let node = dec(doc).unwrap();
        assert_eq!(node.get(b"age").and_then(Node::as_int), Some(-42));
        assert_eq!(node.get(b"name").and_then(Node::as_str), Some("bob"));
        assert_eq!(
            node.get(b"info").map(|n| n.raw),
            Some(&b"d1:xli1e2:hiee"[..])
        );
        assert_eq!(node.raw, &doc[..]);
    }

    #[test]
    fn rejects_non_canonical_integers() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"i+1e",
            b"i-e",
            b"i1.0e",
            b"i--1e",
        ] {
            assert!(
                matches!(dec(bad), Err(BencodeError::NonCanonicalInteger { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(dec(b"i0e").map(|n| n.as_int()), Ok(Some(0)));
        assert_eq!(
            dec(b"i-9223372036854775808e").map(|n| n.as_int()),
            Ok(Some(i64::MIN))
        );
        assert!(matches!(
            dec(b"i9223372036854775808e"),
            Err(BencodeError::IntegerOverflow { .. })
        ));
    }

    #[test]
    fn rejects_lengths_beyond_input_without_allocating() {
        assert!(matches!(
            dec(b"99999999999999999999:x"),
            Err(BencodeError::NonCanonicalLength { .. })
        ));
        assert!(matches!(
            dec(b"4000000000:abc"),
            Err(BencodeError::LengthBeyondInput {
                declared: 4_000_000_000,
                ..
            })
        ));
        assert!(matches!(
            dec(b"03:abc"),
            Err(BencodeError::NonCanonicalLength { .. })
        ));
    }

    #[test]
    fn rejects_duplicates_sorted_or_not() {
        assert!(matches!(
            dec(b"d1:ai1e1:ai2ee"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            dec(b"d1:bi1e1:ai1e1:bi2ee"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        // Unsorted but unique keys are accepted (they exist in real torrents).
        assert!(dec(b"d1:bi1e1:ai2ee").is_ok());
    }

    #[test]
    fn bounds_depth_and_items() {
        let deep = [vec![b'l'; 65], vec![b'e'; 65]].concat();
        assert!(matches!(
            dec(&deep),
            Err(BencodeError::TooDeep { limit: 64, .. })
        ));
        let ok = [vec![b'l'; 64], vec![b'e'; 64]].concat();
        assert!(dec(&ok).is_ok());
        let limits = Limits {
            bencode_max_items: 10,
            ..Limits::DEFAULT
        };
        let many = [b"l".to_vec(), b"i1e".repeat(10), b"e".to_vec()].concat();
        assert!(matches!(
            decode(&many, &limits),
            Err(BencodeError::TooManyItems { .. })
        ));
    }

    #[test]
    fn rejects_trailing_data_and_bad_keys() {
        assert!(matches!(
            dec(b"i1ei2e"),
            Err(BencodeError::TrailingData { count: 3, .. })
        ));
        assert!(matches!(
            dec(b"di1ei2ee"),
            Err(BencodeError::KeyNotString { .. })
        ));
        assert!(matches!(dec(b""), Err(BencodeError::UnexpectedEnd { .. })));
        assert!(matches!(
            dec(b"x"),
            Err(BencodeError::UnexpectedByte { .. })
        ));
    }
}
