//! One entry function per decoder input, shared by the cargo-fuzz targets in
//! `codec/fuzz` and by the stable test that replays the committed corpus.
//!
//! Each takes arbitrary bytes, drives the codec the way a hostile peer
//! could, and asserts what must hold. They never panic on their own; a panic
//! means a bug was found. Sizes are kept small (K ≤ 64, a few pieces) so a
//! fuzzer gets many runs per second.

use std::collections::BTreeSet;

use wire::{Limits, PieceGeometry};

use crate::decoder::{DecodeStep, Decoders, PieceDecoder, Push};
use crate::encoder::{source_symbol, PieceEncoder};
use crate::outer::{OuterCode, OuterError, PieceRef};
use crate::params::{PieceParams, SymbolSize};
use crate::provenance::{sha1, DecodedPiece, DigestKey, Verdict};
use crate::SenderId;

/// A fuzz entry: takes arbitrary bytes, panics only on a bug.
pub type Entry = fn(&[u8]);

/// Names of every entry, matching the cargo-fuzz target and corpus folders.
pub const TARGETS: &[(&str, Entry)] = &[
    ("symbol_frames", symbol_frames),
    ("decode_roundtrip", decode_roundtrip),
    ("outer_rebuild", outer_rebuild),
];

/// Reads the input front to back; past the end every read is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u24(&mut self) -> u32 {
        u32::from_be_bytes([0, self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Deterministic filler bytes for pieces (xorshift), so inputs stay short.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const KEY: [u8; 32] = [7; 32];

/// Arbitrary symbol frames and legacy blocks pushed into a set of decoders:
/// two requested pieces (one sized by the input, one of 16 KiB) and one that
/// is not requested. Whatever arrives, buffering stays within K + spare and a
/// decoded piece has exactly the piece length.
///
/// Frame: kind (bit 0: block), piece, 24-bit ESI or offset, sender, 16-bit
/// length, payload.
pub fn symbol_frames(data: &[u8]) {
    let mut input = Input(data);
    let limits = Limits::DEFAULT;
    let size = SymbolSize::ALL
        .get(usize::from(input.u8() % 3))
        .copied()
        .unwrap_or(SymbolSize::DEFAULT);
    let len = 1 + u32::from(input.u16());
    let mut decoders = Decoders::new(&limits, DigestKey::from_bytes(KEY));
    let mut params = Vec::new();
    for (piece, piece_len) in [(0, len), (1, 16 * 1024)] {
        let Ok(p) = PieceParams::new(piece_len, size) else {
            return;
        };
        decoders.request(piece, p);
        params.push(p);
    }
    let mut decodes = 0;
    while !input.is_empty() {
        let kind = input.u8();
        let piece = u32::from(input.u8() % 3);
        let where_ = input.u24();
        let sender = SenderId(u64::from(input.u8() % 4));
        let payload_len = usize::from(input.u16() % 20_000);
        let payload = input.bytes(payload_len);
        let push = if kind & 1 == 0 {
            decoders.push(piece, where_, payload, sender)
        } else {
            decoders.push_block(piece, where_, payload, sender)
        };
        let expected_len = params.get(piece as usize).map(|p| p.piece_len() as usize);
        match push {
            Push::Decoded(d) => check_len(&d, expected_len),
            Push::ReadyToDecode if decodes < 4 => {
                decodes += 1;
                if let Some(mut dec) = decoders.take(piece) {
                    if let DecodeStep::Decoded(d) = dec.decode() {
                        check_len(&d, expected_len);
                    }
                    decoders.restore(piece, dec);
                }
            }
            _ => {}
        }
        for (piece, p) in (0u32..).zip(&params) {
            if let Some(dec) = decoders.get(piece) {
                assert!(dec.buffered() <= p.k() + limits.decoder_spare_symbols);
            }
        }
    }
}

fn check_len(decoded: &DecodedPiece, expected: Option<usize>) {
    assert_eq!(Some(decoded.data().len()), expected, "decoded piece length");
}

/// Honest symbols of a real piece, chosen, ordered and corrupted by the
/// input, from four senders (and legacy blocks). Without corruption the piece
/// decodes exactly; with it, the hash fails and attribution names exactly the
/// corrupting senders, or the hash passes and the surplus audit names them.
///
/// Layout: 16-bit piece length, 8-bit content seed, then ops of 2 bytes:
/// ESI selector and flags (bits 0-1 sender, bit 2 corrupt, bit 3 block,
/// bit 4 do not decode yet).
pub fn decode_roundtrip(data: &[u8]) {
    let mut input = Input(data);
    let piece_len = 1 + u32::from(input.u16() % (48 * 1024));
    let piece = content(piece_len as usize, u64::from(input.u8()));
    let Ok(params) = PieceParams::new(piece_len, SymbolSize::T1024) else {
        return;
    };
    let Ok(encoder) = PieceEncoder::new(params, &piece) else {
        return;
    };
    let k = params.k();
    let limits = Limits::DEFAULT;
    let mut decoder = PieceDecoder::new(params, &limits, DigestKey::from_bytes(KEY));
    let mut corrupters = BTreeSet::new();
    // What the decoder should hold: distinct ESIs, at most K + spare.
    let mut held = BTreeSet::new();
    let capacity = (k + limits.decoder_spare_symbols) as usize;
    let mut decoded = None;
    while decoded.is_none() && !input.is_empty() {
        let selector = input.u8();
        let flags = input.u8();
        let sender = SenderId(u64::from(flags & 3));
        let corrupt = flags & 4 != 0;
        let push = if flags & 8 != 0 {
            // A legacy block: 16 KiB at a 16 KiB offset, short at the end.
            // Its first byte is corrupted, so it counts only if symbol
            // offset/T is taken (not a duplicate, decoder not full).
            let offset = (u32::from(selector) * 16 * 1024) % piece_len.next_multiple_of(16 * 1024);
            let end = (offset + 16 * 1024).min(piece_len);
            let mut block = piece
                .get(offset as usize..end as usize)
                .unwrap_or_default()
                .to_vec();
            corrupt_first(&mut block, corrupt);
            let first = offset / 1024;
            for esi in first..end.div_ceil(1024) {
                if held.contains(&esi) {
                    continue;
                }
                if held.len() >= capacity {
                    break;
                }
                held.insert(esi);
                if esi == first && corrupt {
                    corrupters.insert(sender);
                }
            }
            decoder.push_block(offset, &block, sender)
        } else {
            let esi = u32::from(selector) % (k + 32);
            let symbol = if esi < k {
                source_symbol(&params, &piece, esi).map(|s| s.into_owned())
            } else {
                encoder.repair_symbol(esi)
            };
            let Ok(mut symbol) = symbol else { return };
            corrupt_first(&mut symbol, corrupt);
            let push = decoder.push(esi, &symbol, sender);
            let expect_taken = !held.contains(&esi) && held.len() < capacity;
            assert_eq!(
                !matches!(push, Push::Rejected(_)),
                expect_taken,
                "symbol {esi} taken"
            );
            if expect_taken {
                held.insert(esi);
                if corrupt {
                    corrupters.insert(sender);
                }
            }
            push
        };
        assert_eq!(decoder.buffered() as usize, held.len(), "symbols held");
        decoded = match push {
            Push::Decoded(d) => Some(d),
            // Deferring lets surplus symbols pile up before the decode.
            Push::ReadyToDecode if flags & 16 == 0 => decoded_piece(decoder.decode()),
            _ => None,
        };
    }
    if decoded.is_none() && decoder.buffered() >= k {
        decoded = decoded_piece(decoder.decode());
    }
    let Some(decoded) = decoded else { return };
    let corrupters: Vec<_> = corrupters.into_iter().collect();
    match decoded.verify(&sha1(&piece)) {
        Verdict::Good(good) => {
            assert_eq!(good.data(), &piece[..], "verified piece differs");
            assert_eq!(good.audit_surplus(), corrupters, "surplus audit");
        }
        Verdict::Bad(failure) => {
            assert!(!corrupters.is_empty(), "hash failed without corruption");
            if let Some((_, good)) = failure.leave_one_sender_out() {
                assert_eq!(good, piece, "leave-one-out produced a wrong piece");
            }
            assert_eq!(failure.attribute(&piece).ok(), Some(corrupters.clone()));
            let provenance = failure.into_provenance();
            assert_eq!(provenance.attribute(&piece).ok(), Some(corrupters));
        }
    }
}

fn decoded_piece(step: DecodeStep) -> Option<DecodedPiece> {
    match step {
        DecodeStep::Decoded(d) => Some(d),
        _ => None,
    }
}

fn corrupt_first(bytes: &mut [u8], corrupt: bool) {
    if let (true, Some(b)) = (corrupt, bytes.first_mut()) {
        *b ^= 0x5a;
    }
}

/// Outer-code rebuild from a subset of original and repair pieces, some of
/// them corrupted. Either every missing piece comes back byte for byte and
/// exactly the corrupted pieces are refused, or there were too few good ones.
///
/// Layout: piece count, piece length (KiB steps), last piece length, repair
/// count, content seed, then per piece a byte: bit 0 missing, bit 1 corrupt.
pub fn outer_rebuild(data: &[u8]) {
    let mut input = Input(data);
    let n = 1 + u32::from(input.u8() % 12);
    let piece_len = 1024 * (1 + u32::from(input.u8() % 3)) + u32::from(input.u8() % 2) * 100;
    let last = 1 + u32::from(input.u16()) % piece_len;
    let repair_count = u32::from(input.u8() % 6);
    let seed = u64::from(input.u8());
    let total = u64::from(n - 1) * u64::from(piece_len) + u64::from(last);
    let Some(geometry) = PieceGeometry::new(piece_len, total) else {
        return;
    };
    let Ok(code) = OuterCode::new(geometry, SymbolSize::T1024, repair_count) else {
        return;
    };
    let file = content(total as usize, seed);
    let pieces: Vec<&[u8]> = file.chunks(piece_len as usize).collect();
    let Ok(repairs) = code.repair_pieces(&pieces) else {
        return;
    };
    let hashes: Vec<[u8; 20]> = pieces.iter().map(|p| sha1(p)).collect();
    let repair_hashes: Vec<[u8; 32]> = repairs.iter().map(|r| OuterCode::repair_hash(r)).collect();

    // Per piece (originals, then repairs): missing, or a corrupted copy.
    let all: Vec<&[u8]> = pieces
        .iter()
        .copied()
        .chain(repairs.iter().map(|r| &r[..]))
        .collect();
    let mut copies: Vec<Option<Vec<u8>>> = Vec::new();
    let mut missing = Vec::new();
    let mut refused_expected = Vec::new();
    for (i, p) in (0u32..).zip(&all) {
        let flags = input.u8();
        missing.push(flags & 1 != 0);
        let copy = (flags & 3 == 2).then(|| {
            refused_expected.push(if i < n {
                PieceRef::Original(i)
            } else {
                PieceRef::Repair(i - n)
            });
            let mut c = p.to_vec();
            if let Some(b) = c.get_mut(usize::from(flags) % p.len().max(1)) {
                *b ^= 1;
            }
            c
        });
        copies.push(copy);
    }
    let supplied: Vec<Option<&[u8]>> = all
        .iter()
        .zip(&copies)
        .zip(&missing)
        .map(|((p, copy), gone)| match (gone, copy) {
            (true, _) => None,
            (false, Some(c)) => Some(&c[..]),
            (false, None) => Some(*p),
        })
        .collect();
    let (orig_in, repair_in) = supplied.split_at(n as usize);
    let result = code.rebuild(orig_in, repair_in, &hashes, &repair_hashes);
    if let Err(e) = &result {
        assert!(
            matches!(e, OuterError::NotEnoughPieces { .. }),
            "unexpected rebuild error: {e}"
        );
    }
    match result {
        Ok(rebuilt) => {
            assert_eq!(rebuilt.refused, refused_expected, "refused pieces");
            for (index, bytes) in &rebuilt.pieces {
                assert_eq!(Some(&bytes[..]), pieces.get(*index as usize).copied());
            }
            let lost = orig_in.iter().filter(|p| p.is_none()).count()
                + refused_expected
                    .iter()
                    .filter(|r| matches!(r, PieceRef::Original(_)))
                    .count();
            assert_eq!(rebuilt.pieces.len(), lost, "every missing piece rebuilt");
        }
        Err(OuterError::NotEnoughPieces {
            have,
            need,
            refused,
        }) => {
            assert_eq!(refused, refused_expected, "refused pieces");
            let good = supplied.iter().filter(|p| p.is_some()).count() - refused.len();
            assert_eq!(have as usize, good);
            assert!(need > have);
        }
        Err(_) => {}
    }
}
