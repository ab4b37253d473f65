use super::*;
use crate::encoder::{source_symbol, PieceEncoder};
use crate::params::SymbolSize;
use crate::provenance::Verdict;

const S: SenderId = SenderId(1);

fn setup(len: u32, size: SymbolSize) -> (PieceParams, Vec<u8>, PieceEncoder) {
    let params = PieceParams::new(len, size).unwrap();
    let piece: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 0x5c).collect();
    let enc = PieceEncoder::new(params, &piece).unwrap();
    (params, piece, enc)
}

fn decoder(params: PieceParams) -> PieceDecoder {
    PieceDecoder::new(params, &Limits::DEFAULT, DigestKey::from_bytes([1; 32]))
}

#[test]
fn rejects_malformed_symbols_before_raptorq() {
    let (params, piece, enc) = setup(3000, SymbolSize::T1024);
    let mut dec = decoder(params);
    let good = source_symbol(&params, &piece, 0).unwrap();
    let cases = [
        (
            1 << 24,
            vec![0; 1024],
            Reject::EsiOutOfRange {
                esi: 1 << 24,
                max: MAX_ESI,
            },
        ),
        (
            u32::MAX,
            vec![0; 1024],
            Reject::EsiOutOfRange {
                esi: u32::MAX,
                max: MAX_ESI,
            },
        ),
        (
            0,
            vec![0; 1023],
            Reject::WrongLength {
                expected: 1024,
                got: 1023,
            },
        ),
        (
            5,
            vec![0; 1025],
            Reject::WrongLength {
                expected: 1024,
                got: 1025,
            },
        ),
        (
            0,
            vec![],
            Reject::WrongLength {
                expected: 1024,
                got: 0,
            },
        ),
    ];
    for (esi, bytes, want) in cases {
        match dec.push(esi, &bytes, S) {
            Push::Rejected(r) => {
                assert_eq!(r, want);
                assert_eq!(r.action(), Action::StrikeSender);
            }
            other => panic!("{esi}: {other:?}"),
        }
    }
    // Last source symbol: 3000 - 2048 = 952 piece bytes, then padding.
    let mut last = source_symbol(&params, &piece, 2).unwrap().into_owned();
    last[1000] = 1;
    assert!(matches!(
        dec.push(2, &last, S),
        Push::Rejected(Reject::NonZeroPadding { esi: 2 })
    ));
    assert!(matches!(
        dec.push(0, &good, S),
        Push::NeedMore { missing: 2 }
    ));
    match dec.push(0, &good, SenderId(2)) {
        Push::Rejected(r) => {
            assert_eq!(r, Reject::Duplicate { esi: 0 });
            assert_eq!(r.action(), Action::Drop);
        }
        other => panic!("{other:?}"),
    }
    let r = enc.repair_symbol(9).unwrap();
    assert!(matches!(dec.push(9, &r, S), Push::NeedMore { missing: 1 }));
    assert!(matches!(
        dec.push(9, &r, S),
        Push::Rejected(Reject::Duplicate { esi: 9 })
    ));
    assert_eq!(dec.buffered(), 2);
}

#[test]
fn buffers_at_most_k_plus_spare() {
    let (params, _, enc) = setup(4096, SymbolSize::T1024);
    let limits = Limits {
        decode_attempts: 0,
        ..Limits::DEFAULT
    };
    let mut dec = PieceDecoder::new(params, &limits, DigestKey::from_bytes([0; 32]));
    let cap = params.k() + limits.decoder_spare_symbols;
    for esi in 4..4 + cap {
        let push = dec.push(esi, &enc.repair_symbol(esi).unwrap(), S);
        assert!(matches!(push, Push::NeedMore { .. } | Push::ReadyToDecode));
    }
    let esi = 4 + cap;
    assert!(matches!(
        dec.push(esi, &enc.repair_symbol(esi).unwrap(), S),
        Push::Rejected(Reject::Full)
    ));
    assert_eq!(dec.buffered(), cap);
    // No attempts allowed: decode gives up at once and frees the symbols.
    assert!(matches!(dec.decode(), DecodeStep::GaveUp));
    assert!(matches!(dec.decode(), DecodeStep::Finished));
    assert!(matches!(
        dec.push(0, &[0; 1024], S),
        Push::Rejected(Reject::Finished)
    ));
}

#[test]
fn all_source_symbols_assemble_without_decoding() {
    let (params, piece, _) = setup(10_000, SymbolSize::T4096);
    let mut dec = decoder(params);
    assert!(matches!(
        dec.push(2, &source_symbol(&params, &piece, 2).unwrap(), S),
        Push::NeedMore { missing: 2 }
    ));
    let _ = dec.push(0, &source_symbol(&params, &piece, 0).unwrap(), S);
    match dec.push(1, &source_symbol(&params, &piece, 1).unwrap(), S) {
        Push::Decoded(d) => {
            assert!(!d.used_repair());
            assert_eq!(d.symbols_used(), 3);
            assert_eq!(d.data(), &piece[..]);
        }
        other => panic!("{other:?}"),
    }
    assert!(dec.is_finished());
    assert_eq!(dec.attempts(), 0);
}

#[test]
fn legacy_blocks_are_source_symbols() {
    // 40000 bytes: blocks at 0, 16384 and a short one at 32768.
    let (params, piece, enc) = setup(40_000, SymbolSize::T1024);
    let mut dec = decoder(params);
    let block = |o: usize, l: usize| piece[o..o + l].to_vec();
    assert!(matches!(
        dec.push_block(0, &block(0, 16384), S),
        Push::NeedMore { missing: 24 }
    ));
    // Misaligned, overlong, empty and past-the-end blocks are refused.
    for (offset, len) in [(100, 1024), (16384, 30_000), (16384, 0), (40_960, 1024)] {
        let data = vec![0; len];
        match dec.push_block(offset, &data, S) {
            Push::Rejected(r) => assert_eq!(r, Reject::BadBlock { offset, len }),
            other => panic!("{offset}: {other:?}"),
        }
    }
    // A block ending off a symbol boundary inside the piece is refused.
    assert!(matches!(
        dec.push_block(16384, &block(16384, 1500), S),
        Push::Rejected(Reject::BadBlock { .. })
    ));
    // The same block again is a duplicate.
    assert!(matches!(
        dec.push_block(0, &block(0, 16384), S),
        Push::Rejected(Reject::Duplicate { esi: 0 })
    ));
    // The short last block covers ESIs 32..=39, the last one padded.
    let _ = dec.push_block(32768, &block(32768, 40_000 - 32768), SenderId(2));
    // Coded symbols fill the middle; one is lost, a repair symbol makes up.
    for esi in 16..32 {
        if esi != 20 {
            let _ = dec.push(
                esi,
                &source_symbol(&params, &piece, esi).unwrap(),
                SenderId(3),
            );
        }
    }
    let push = dec.push(40, &enc.repair_symbol(40).unwrap(), SenderId(4));
    assert!(matches!(push, Push::ReadyToDecode));
    let piece_out = match dec.decode() {
        DecodeStep::Decoded(d) => d,
        DecodeStep::NeedMore { missing } => {
            // Rank-deficient at K: one more repair symbol.
            assert_eq!(missing, 1);
            let _ = dec.push(41, &enc.repair_symbol(41).unwrap(), SenderId(4));
            match dec.decode() {
                DecodeStep::Decoded(d) => d,
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    };
    assert!(piece_out.used_repair());
    let hash = crate::provenance::sha1(&piece);
    assert!(matches!(piece_out.verify(&hash), Verdict::Good(_)));
}

#[test]
fn decodes_with_esis_at_the_top_of_the_24_bit_space() {
    let (params, piece, enc) = setup(8 * 1024, SymbolSize::T1024);
    let mut dec = decoder(params);
    let mut out = None;
    for esi in (MAX_ESI - 11..=MAX_ESI).rev() {
        match dec.push(esi, &enc.repair_symbol(esi).unwrap(), S) {
            Push::ReadyToDecode => {
                if let DecodeStep::Decoded(d) = dec.decode() {
                    out = Some(d);
                    break;
                }
            }
            Push::NeedMore { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(out.unwrap().data(), &piece[..]);
}

#[test]
fn manager_rejects_unrequested_pieces_and_moves_decoders() {
    let (params, piece, enc) = setup(2048, SymbolSize::T1024);
    let mut all = Decoders::new(&Limits::DEFAULT, DigestKey::random());
    let sym0 = source_symbol(&params, &piece, 0).unwrap();
    assert!(matches!(
        all.push(7, 0, &sym0, S),
        Push::Rejected(Reject::NotRequested { piece: 7 })
    ));
    assert!(all.request(7, params));
    assert!(!all.request(7, params));
    assert!(matches!(
        all.push(7, 2, &enc.repair_symbol(2).unwrap(), S),
        Push::NeedMore { .. }
    ));
    assert!(matches!(
        all.push(7, 3, &enc.repair_symbol(3).unwrap(), S),
        Push::ReadyToDecode
    ));
    let mut dec = all.take(7).unwrap();
    assert!(matches!(
        all.push(7, 0, &sym0, S),
        Push::Rejected(Reject::Busy)
    ));
    assert!(all.is_requested(7));
    let step = dec.decode();
    all.restore(7, dec);
    match step {
        DecodeStep::Decoded(d) => {
            assert_eq!(d.data(), &piece[..]);
            assert!(!all.is_requested(7), "a finished decoder is not put back");
        }
        DecodeStep::NeedMore { .. } => assert!(all.is_requested(7)),
        other => panic!("{other:?}"),
    }
    // Cancelling while taken: the decoder is not put back.
    assert!(all.request(8, params));
    let dec = all.take(8).unwrap();
    assert!(all.cancel(8));
    all.restore(8, dec);
    assert!(!all.is_requested(8));
    // A decoder that finishes on push is removed; late symbols are dropped.
    assert!(all.request(9, params));
    let _ = all.push(9, 0, &sym0, S);
    let sym1 = source_symbol(&params, &piece, 1).unwrap();
    assert!(matches!(all.push(9, 1, &sym1, S), Push::Decoded(_)));
    assert!(matches!(
        all.push(9, 1, &sym1, S),
        Push::Rejected(Reject::NotRequested { piece: 9 })
    ));
}
