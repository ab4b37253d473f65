//! Serving symbols of a piece we hold.
//!
//! RaptorQ is systematic: source symbol `esi < K` is bytes `esi·T ..` of the
//! piece itself, so serving it is a slice ([`source_symbol`]) and needs no
//! encoder at all. Only repair symbols (ESI ≥ K) need the intermediate
//! symbols computed by a [`PieceEncoder`]; building one costs about as much
//! as decoding the piece, so hot pieces keep theirs in an [`EncoderCache`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use raptorq::SourceBlockEncoder;

use crate::params::{PieceParams, SymbolSize, MAX_ESI};
use crate::{raptor, CodecError};

/// Source symbol `esi` of `piece`: a slice of the piece (no copy), except the
/// last symbol of a piece that is not a multiple of T, which is zero-padded.
pub fn source_symbol<'a>(
    params: &PieceParams,
    piece: &'a [u8],
    esi: u32,
) -> Result<Cow<'a, [u8]>, CodecError> {
    check_len(params, piece)?;
    if esi >= params.k() {
        return Err(CodecError::EsiOutOfRange {
            esi,
            min: 0,
            max: params.k() - 1,
        });
    }
    let t = params.t_usize();
    let start = esi as usize * t;
    let len = params.source_bytes_in(esi);
    let bytes = piece.get(start..start + len).unwrap_or_default();
    if len == t {
        Ok(Cow::Borrowed(bytes))
    } else {
        let mut padded = vec![0; t];
        if let Some(head) = padded.get_mut(..len) {
            head.copy_from_slice(bytes);
        }
        Ok(Cow::Owned(padded))
    }
}

fn check_len(params: &PieceParams, piece: &[u8]) -> Result<(), CodecError> {
    if piece.len() == params.piece_len() as usize {
        Ok(())
    } else {
        Err(CodecError::WrongLength {
            expected: params.piece_len() as usize,
            got: piece.len(),
        })
    }
}

/// The piece zero-padded to K·T, borrowing it when no padding is needed.
pub(crate) fn padded<'a>(params: &PieceParams, piece: &'a [u8]) -> Cow<'a, [u8]> {
    if piece.len() == params.padded_len() {
        Cow::Borrowed(piece)
    } else {
        let mut v = vec![0; params.padded_len()];
        if let Some(head) = v.get_mut(..piece.len()) {
            head.copy_from_slice(piece);
        }
        Cow::Owned(v)
    }
}

/// Repair-symbol generator for one piece.
pub struct PieceEncoder {
    params: PieceParams,
    inner: SourceBlockEncoder,
}

impl std::fmt::Debug for PieceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceEncoder")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PieceEncoder {
    /// Computes the intermediate symbols of `piece` (CPU work: run it off the
    /// async reactor). The piece must be exactly `params.piece_len()` bytes.
    pub fn new(params: PieceParams, piece: &[u8]) -> Result<Self, CodecError> {
        check_len(&params, piece)?;
        let block = padded(&params, piece);
        Ok(PieceEncoder {
            params,
            inner: raptor::encoder(params.k(), params.symbol_size(), &block),
        })
    }

    pub fn params(&self) -> &PieceParams {
        &self.params
    }

    /// Repair symbols `first_esi .. first_esi + count`, each T bytes,
    /// generated lazily one by one. ESIs must lie in K ..= 2²⁴ − 1.
    pub fn repair_symbols(
        &self,
        first_esi: u32,
        count: u32,
    ) -> Result<impl Iterator<Item = Vec<u8>> + '_, CodecError> {
        let k = self.params.k();
        let last = first_esi.saturating_add(count.saturating_sub(1));
        if first_esi < k || last > MAX_ESI {
            return Err(CodecError::EsiOutOfRange {
                esi: if first_esi < k { first_esi } else { last },
                min: k,
                max: MAX_ESI,
            });
        }
        // One symbol per raptorq call keeps memory flat however many symbols
        // a caller asks for; the per-call setup is a few integer operations.
        Ok((first_esi..first_esi.saturating_add(count))
            .flat_map(move |esi| raptor::repair_symbols(&self.inner, k, esi, 1)))
    }

    /// One repair symbol (`esi` in K ..= 2²⁴ − 1).
    pub fn repair_symbol(&self, esi: u32) -> Result<Vec<u8>, CodecError> {
        self.repair_symbols(esi, 1)?
            .next()
            .ok_or(CodecError::EsiOutOfRange {
                esi,
                min: self.params.k(),
                max: MAX_ESI,
            })
    }

    /// Approximate heap bytes held: raptorq keeps a copy of the K source
    /// symbols and the L intermediate symbols. L = K' + S + H, where S and H
    /// (RFC 6330 §5.6) stay below K'/10 + 30, so this errs on the high side.
    pub fn memory_bytes(&self) -> usize {
        let k = self.params.k() as usize;
        let k_ext = raptorq::extended_source_block_symbols(self.params.k()) as usize;
        let l = k_ext + k_ext / 10 + 30;
        (k + l) * self.params.t_usize()
    }
}

/// Least-recently-used encoders of hot pieces, bounded in bytes.
///
/// Keyed by piece and symbol size, since peers may use different T for the
/// same piece. Values are `Arc`s so a blocking task can generate symbols
/// while the cache stays with the session.
#[derive(Debug)]
pub struct EncoderCache {
    cap_bytes: usize,
    used_bytes: usize,
    tick: u64,
    entries: HashMap<(u32, SymbolSize), (Arc<PieceEncoder>, u64)>,
    /// Last-use tick → key; the first entry is the least recently used.
    order: BTreeMap<u64, (u32, SymbolSize)>,
}

impl EncoderCache {
    /// A cache holding at most `cap_bytes` of encoders
    /// (`Limits::encoder_cache_bytes`).
    pub fn new(cap_bytes: usize) -> Self {
        EncoderCache {
            cap_bytes,
            used_bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The encoder of `piece` at this symbol size, marking it recently used.
    pub fn get(&mut self, piece: u32, symbol_size: SymbolSize) -> Option<Arc<PieceEncoder>> {
        let key = (piece, symbol_size);
        let tick = self.next_tick();
        let (enc, last) = self.entries.get_mut(&key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key);
        Some(Arc::clone(enc))
    }

    /// Caches `encoder` for `piece`, evicting least-recently-used encoders
    /// until it fits. Returns the evicted keys. An encoder larger than the
    /// whole cap is not cached (the caller still has its `Arc`).
    pub fn insert(&mut self, piece: u32, encoder: Arc<PieceEncoder>) -> Vec<(u32, SymbolSize)> {
        let key = (piece, encoder.params().symbol_size());
        let size = encoder.memory_bytes();
        self.remove(key.0, key.1);
        if size > self.cap_bytes {
            return Vec::new();
        }
        let mut evicted = Vec::new();
        while self.used_bytes + size > self.cap_bytes {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&victim) {
                self.used_bytes -= old.memory_bytes();
            }
            evicted.push(victim);
        }
        let tick = self.next_tick();
        self.order.insert(tick, key);
        self.entries.insert(key, (encoder, tick));
        self.used_bytes += size;
        evicted
    }

    /// Drops the encoder of `piece` (e.g. the piece was found bad on disk).
    pub fn remove(&mut self, piece: u32, symbol_size: SymbolSize) -> Option<Arc<PieceEncoder>> {
        let (enc, tick) = self.entries.remove(&(piece, symbol_size))?;
        self.order.remove(&tick);
        self.used_bytes -= enc.memory_bytes();
        Some(enc)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes currently held (by [`PieceEncoder::memory_bytes`]).
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn source_symbols_are_slices_and_last_is_padded() {
        let p = PieceParams::new(2500, SymbolSize::T1024).unwrap();
        let data = piece(2500, 1);
        let s0 = source_symbol(&p, &data, 0).unwrap();
        assert!(matches!(s0, Cow::Borrowed(_)));
        assert_eq!(&s0[..], &data[..1024]);
        let s2 = source_symbol(&p, &data, 2).unwrap();
        assert_eq!(s2.len(), 1024);
        assert_eq!(&s2[..452], &data[2048..]);
        assert!(s2[452..].iter().all(|b| *b == 0));
        assert!(source_symbol(&p, &data, 3).is_err());
        assert!(source_symbol(&p, &data[..10], 0).is_err());
    }

    #[test]
    fn repair_symbols_decode_the_piece() {
        let p = PieceParams::new(10_000, SymbolSize::T1024).unwrap();
        let data = piece(10_000, 7);
        let enc = PieceEncoder::new(p, &data).unwrap();
        let repair: Vec<_> = enc.repair_symbols(p.k(), p.k() + 2).unwrap().collect();
        assert_eq!(repair.len(), 12);
        assert_eq!(enc.repair_symbol(p.k() + 3).unwrap(), repair[3]);
        let symbols = (p.k()..).zip(repair);
        let out = raptor::decode(p.k(), p.symbol_size(), symbols).unwrap();
        assert_eq!(&out[..10_000], &data[..]);
        assert!(out[10_000..].iter().all(|b| *b == 0));
    }

    #[test]
    fn repair_esi_bounds() {
        let p = PieceParams::new(4096, SymbolSize::T1024).unwrap();
        let enc = PieceEncoder::new(p, &piece(4096, 0)).unwrap();
        let err = |first, count| enc.repair_symbols(first, count).err();
        let range = |esi| {
            Some(CodecError::EsiOutOfRange {
                esi,
                min: 4,
                max: MAX_ESI,
            })
        };
        assert_eq!(err(3, 1), range(3));
        assert_eq!(err(MAX_ESI, 2), range(MAX_ESI + 1));
        assert_eq!(err(u32::MAX, 1), range(u32::MAX));
        assert_eq!(enc.repair_symbol(MAX_ESI).unwrap().len(), 1024);
        assert_eq!(enc.repair_symbols(4, 0).unwrap().count(), 0);
    }

    #[test]
    fn cache_evicts_least_recently_used_within_cap() {
        let p = PieceParams::new(8192, SymbolSize::T1024).unwrap();
        let enc = |seed| Arc::new(PieceEncoder::new(p, &piece(8192, seed)).unwrap());
        let size = enc(0).memory_bytes();
        let mut cache = EncoderCache::new(size * 2);
        assert!(cache.insert(0, enc(0)).is_empty());
        assert!(cache.insert(1, enc(1)).is_empty());
        assert!(cache.get(0, SymbolSize::T1024).is_some()); // 1 is now LRU
        assert_eq!(cache.insert(2, enc(2)), vec![(1, SymbolSize::T1024)]);
        assert!(cache.get(1, SymbolSize::T1024).is_none());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.used_bytes(), size * 2);
        let mut tiny = EncoderCache::new(size - 1);
        assert!(tiny.insert(0, enc(0)).is_empty());
        assert!(tiny.is_empty());
        assert!(cache.remove(0, SymbolSize::T1024).is_some());
        assert_eq!(cache.used_bytes(), size);
    }
}
