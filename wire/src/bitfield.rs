//! The piece bitfield, in the wire's bit order (BEP 3: the high bit of the
//! first byte is piece 0).

use bitvec::prelude::*;
use bytes::Bytes;
use thiserror::Error;

/// Why a peer's bitfield was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitfieldError {
    #[error("bitfield is {got} bytes, {expected} expected for {pieces} pieces")]
    WrongLength {
        got: usize,
        expected: usize,
        pieces: u32,
    },
    #[error("bitfield has spare bits set past piece {pieces}")]
    SpareBitsSet { pieces: u32 },
}

/// Which pieces someone has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: BitVec<u8, Msb0>,
    ones: u32,
}

impl Bitfield {
    /// No pieces of `count`.
    pub fn new(count: u32) -> Self {
        Bitfield {
            bits: bitvec![u8, Msb0; 0; count as usize],
            ones: 0,
        }
    }

    /// All pieces of `count`.
    pub fn full(count: u32) -> Self {
        Bitfield {
            bits: bitvec![u8, Msb0; 1; count as usize],
            ones: count,
        }
    }

    /// From a BITFIELD message payload, checking its length and spare bits.
    pub fn from_wire(bytes: &[u8], count: u32) -> Result<Self, BitfieldError> {
        let expected = (count as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                pieces: count,
            });
        }
        let mut bits = BitVec::<u8, Msb0>::from_slice(bytes);
        if bits.get(count as usize..).is_some_and(|spare| spare.any()) {
            return Err(BitfieldError::SpareBitsSet { pieces: count });
        }
        bits.truncate(count as usize);
        let ones = u32::try_from(bits.count_ones()).unwrap_or(u32::MAX);
        Ok(Bitfield { bits, ones })
    }

    /// The BITFIELD message payload.
    pub fn to_wire(&self) -> Bytes {
        let mut bits = self.bits.clone();
        bits.set_uninitialized(false);
        Bytes::from(bits.into_vec())
    }

    pub fn len(&self) -> u32 {
        u32::try_from(self.bits.len()).unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Whether piece `index` is set (false when out of range).
    pub fn has(&self, index: u32) -> bool {
        self.bits.get(index as usize).is_some_and(|b| *b)
    }

    /// Sets piece `index`; returns true when it was not set before.
    pub fn set(&mut self, index: u32) -> bool {
        match self.bits.get_mut(index as usize) {
            Some(mut bit) if !*bit => {
                bit.set(true);
                self.ones += 1;
                true
            }
            _ => false,
        }
    }

    /// Clears piece `index`; returns true when it was set.
    pub fn clear(&mut self, index: u32) -> bool {
        match self.bits.get_mut(index as usize) {
            Some(mut bit) if *bit => {
                bit.set(false);
                self.ones -= 1;
                true
            }
            _ => false,
        }
    }

    /// Number of pieces set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_complete(&self) -> bool {
        self.ones == self.len()
    }

    /// Indexes of set pieces.
    pub fn iter_set(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter_ones().filter_map(|i| u32::try_from(i).ok())
    }

    /// Adds every piece of `other` (of the same length).
    pub fn union_with(&mut self, other: &Bitfield) {
        for i in other.iter_set().collect::<Vec<_>>() {
            self.set(i);
        }
    }

    /// True when `other` has a piece this bitfield lacks.
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.bits
            .iter()
            .zip(other.bits.iter())
            .any(|(mine, theirs)| !*mine && *theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_length_and_spare_bits() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(&b.to_wire()[..], &[0x80, 0x40]);
        assert_eq!(Bitfield::from_wire(&[0x80, 0x40], 10), Ok(b.clone()));
        assert_eq!(b.count(), 2);
        assert!(matches!(
            Bitfield::from_wire(&[0x80], 10),
            Err(BitfieldError::WrongLength { .. })
        ));
        assert!(matches!(
            Bitfield::from_wire(&[0x80, 0x60], 10),
            Err(BitfieldError::SpareBitsSet { .. })
        ));
        assert!(Bitfield::full(10).is_complete());
        assert_eq!(&Bitfield::full(10).to_wire()[..], &[0xff, 0xc0]);
        assert!(b.lacks_any_of(&Bitfield::full(10)));
        assert!(!Bitfield::full(10).lacks_any_of(&b));
        assert_eq!(b.iter_set().collect::<Vec<_>>(), vec![0, 9]);
    }
}
