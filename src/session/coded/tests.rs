use std::time::{Duration, Instant};

use codec::{DecodeStep, PieceEncoder, Verdict};
use sha1::{Digest, Sha1};
use wire::fountain::SymbolRange;
use wire::{Limits, PieceGeometry};

use super::*;

const PIECE: u32 = 65536; // K = 64 symbols of 1 KiB

fn state() -> CodedState {
    let g = PieceGeometry::new(PIECE, 4 * u64::from(PIECE)).unwrap();
    let mut s = CodedState::new(g, (0, 0), &Limits::DEFAULT).unwrap();
    s.start(0).unwrap();
    s
}

fn piece_data() -> Vec<u8> {
    (0..PIECE).map(|i| (i * 7 % 251) as u8).collect()
}

fn symbol(data: &[u8], enc: &PieceEncoder, esi: u32) -> Vec<u8> {
    if esi < 64 {
        data[esi as usize * 1024..][..1024].to_vec()
    } else {
        enc.repair_symbol(esi).unwrap()
    }
}

fn encoder(data: &[u8], s: &CodedState) -> PieceEncoder {
    PieceEncoder::new(s.code().piece(0).unwrap(), data).unwrap()
}

#[test]
fn a_clean_single_sender_gets_exactly_the_source_symbols() {
    let mut s = state();
    assert_eq!(s.t(), 1024);
    let plan = s.plan(1, 0, 10_000, Ask::Exact);
    assert_eq!(
        plan,
        vec![SymbolRange {
            piece: 0,
            first_esi: 0,
            count: 64
        }]
    );
    assert!(
        s.plan(1, 0, 10_000, Ask::Exact).is_empty(),
        "nothing more until something is lost"
    );
    let data = piece_data();
    for esi in 0..63 {
        let r = s.push(1, 0, esi, &data[esi as usize * 1024..][..1024]);
        assert!(matches!(r, Received::Stored), "{r:?}");
    }
    // The last source symbol completes the piece without any decoding.
    let Received::Decoded(piece) = s.push(1, 0, 63, &data[63 * 1024..][..1024]) else {
        panic!("not decoded")
    };
    assert!(!piece.used_repair());
    // Until its hash check removes it, a finished piece asks for nothing.
    assert!(s.plan(2, 0, 10_000, Ask::Race).is_empty());
    assert!(matches!(
        piece.verify(&Sha1::digest(&data).into()),
        Verdict::Good(_)
    ));
}

#[test]
fn extra_senders_get_never_overlapping_repair_ranges() {
    let mut s = state();
    let first = s.plan(1, 0, 32, Ask::Exact);
    assert_eq!(
        first,
        vec![SymbolRange {
            piece: 0,
            first_esi: 0,
            count: 32
        }]
    );
    // Budget-limited owner continues with source symbols.
    let more = s.plan(1, 0, 16, Ask::Exact);
    assert_eq!(
        more,
        vec![SymbolRange {
            piece: 0,
            first_esi: 32,
            count: 16
        }]
    );
    // Another sender is only needed for the rest: repair ESIs from K on.
    let second = s.plan(2, 0, 1000, Ask::Exact);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].first_esi, 64);
    assert!(second[0].count >= 16);
    // In endgame a third sender may race them, on fresh ESIs.
    let third = s.plan(3, 0, 1000, Ask::Race);
    assert_eq!(third[0].first_esi, 64 + second[0].count);
    let mut all: Vec<(u32, u32)> = [first, more, second, third]
        .concat()
        .iter()
        .map(|r| (r.first_esi, r.end()))
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        assert!(w[0].1 <= w[1].0, "ranges overlap: {all:?}");
    }
}

#[test]
fn endgame_races_slow_senders_not_fast_ones() {
    let mut s = state();
    // A slow sender (100 kB/s) holds the whole piece.
    assert_eq!(s.plan(1, 0, 1000, Ask::Exact)[0].count, 64);
    s.set_rate(1, 100_000.0);
    s.set_rate(2, 1_000_000.0);
    s.set_rate(3, 1_000_000.0);
    // A sender ten times faster races it for nine tenths of the piece plus
    // the spare against a failed decode: 65 - 6.4, rounded up, + 1.
    let fast = s.plan(2, 0, 1000, Ask::Race);
    assert_eq!(fast.len(), 1);
    assert_eq!(fast[0].first_esi, 64);
    assert_eq!(fast[0].count, 60);
    // A second fast sender counts the first's symbols in full: it would
    // bring the same need again.
    assert!(s.plan(3, 0, 1000, Ask::Race).is_empty());
    // Unmeasured, it races as before: everything still missing.
    let mut s = state();
    s.plan(1, 0, 1000, Ask::Exact);
    s.set_rate(1, 100_000.0);
    assert_eq!(s.plan(2, 0, 1000, Ask::Race)[0].count, 66);
}

#[test]
fn endgame_takes_pieces_over_from_much_slower_senders() {
    let mut s = state();
    s.plan(1, 0, 1000, Ask::Exact);
    s.set_rate(1, 100_000.0);
    s.set_rate(2, 1_000_000.0);
    // Not without the budget to ask for all the slow one owes.
    assert!(s.take_over(2, 0, 60).is_empty());
    assert_eq!(s.take_over(2, 0, 100), vec![1]);
    // The slow sender's request is closed: the fast one asks for it all.
    assert_eq!(s.in_flight(1), 0);
    assert_eq!(s.plan(2, 0, 1000, Ask::Race)[0].count, 65);
    // A sender at least half as fast is raced, not dropped; an unmeasured
    // one neither.
    let mut s = state();
    s.plan(1, 0, 1000, Ask::Exact);
    s.set_rate(1, 600_000.0);
    s.set_rate(2, 1_000_000.0);
    assert!(s.take_over(2, 0, 1000).is_empty());
    let mut s = state();
    s.plan(1, 0, 1000, Ask::Exact);
    s.set_rate(2, 1_000_000.0);
    assert!(s.take_over(2, 0, 1000).is_empty());
    assert_eq!(s.in_flight(1), 64);
}

#[test]
fn a_sender_leaving_mid_piece_wastes_nothing_received() {
    let mut s = state();
    let data = piece_data();
    let enc = encoder(&data, &s);
    s.plan(1, 0, 1000, Ask::Exact);
    for esi in 0..40 {
        assert!(matches!(
            s.push(1, 0, esi, &symbol(&data, &enc, esi)),
            Received::Stored
        ));
    }
    s.peer_gone(1);
    // The new sender is asked only for what is missing, as repair symbols.
    let plan = s.plan(2, 0, 1000, Ask::Exact);
    assert_eq!(plan.len(), 1);
    assert!(plan[0].first_esi >= 64, "{plan:?}");
    assert_eq!(plan[0].count, 24, "exactly the 24 missing");
    // In endgame a sender joining gets a spare on top (its loss unknown).
    let spare = s.plan(3, 0, 1000, Ask::Hedged);
    assert_eq!(spare.len(), 1, "{spare:?}");
    assert!(spare[0].count >= 1, "a spare against a failed decode");
    let mut ready = false;
    for esi in plan[0].first_esi..plan[0].end() {
        ready |= matches!(
            s.push(2, 0, esi, &symbol(&data, &enc, esi)),
            Received::ReadyToDecode
        );
    }
    assert!(ready, "K symbols are enough to try");
    let mut dec = s.take_decoder(0).unwrap();
    match dec.decode() {
        DecodeStep::Decoded(p) => assert_eq!(p.data(), &data[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn losses_are_measured_and_compensated() {
    let mut s = state();
    let now = Instant::now();
    let plan = s.plan(1, 0, 1000, Ask::Exact);
    let data = piece_data();
    // Every tenth symbol lost.
    for esi in 0..64 {
        if esi % 10 != 0 {
            s.push(1, 0, esi, &data[esi as usize * 1024..][..1024]);
        }
    }
    // The range's last datagram was number 10.
    s.range_sent(1, plan[0], 10, now);
    let fallback = Duration::from_secs(1);
    assert!(
        s.expire(1, Some(12), 4, now, fallback).is_empty(),
        "within the reordering allowance"
    );
    assert!(
        s.expire(2, Some(100), 4, now, fallback).is_empty(),
        "another peer's datagrams say nothing"
    );
    assert_eq!(
        s.expire(1, Some(15), 4, now, fallback),
        vec![0],
        "overtaken by later datagrams"
    );
    let loss = s.loss_of(1);
    assert!(loss > 0.0 && loss <= 0.11, "{loss}");
    // 7 missing: asked again exactly, as repair symbols.
    let again = s.plan(1, 0, 1000, Ask::Exact);
    assert_eq!(again[0].first_esi, 64);
    assert_eq!(again[0].count, 7, "{again:?}");
    // In endgame the same piece gets more: a spare, and padding for the
    // sender's measured loss on what it still owes.
    let hedge = s.plan(1, 0, 1000, Ask::Hedged);
    assert_eq!(hedge.len(), 1, "{hedge:?}");
    assert_eq!(hedge[0].first_esi, 71);
    assert!(hedge[0].count >= 2, "{hedge:?}");
    // Stragglers of an expired range are surplus, not faults.
    let straggler = s.push(1, 0, 0, &data[..1024]);
    assert!(matches!(straggler, Received::Late), "{straggler:?}");
    // Symbols nobody asked for are the sender's fault.
    assert!(matches!(
        s.push(9, 0, 5_000, &[0u8; 1024]),
        Received::Unrequested
    ));
    assert!(matches!(s.push(1, 3, 0, &[0u8; 1024]), Received::NotCoded));
}

#[test]
fn senders_still_owing_symbols_are_stopped_once_the_decoder_has_enough() {
    let mut s = state();
    let data = piece_data();
    let enc = encoder(&data, &s);
    // Two senders share the piece (the second in endgame).
    let first = s.plan(1, 0, 40, Ask::Exact);
    let second = s.plan(2, 0, 10_000, Ask::Race);
    assert!(
        !first.is_empty() && !second.is_empty(),
        "{first:?} {second:?}"
    );
    let mut ready = false;
    for range in first.iter().chain(&second) {
        for esi in range.first_esi..range.end() {
            let sender = if first.contains(range) { 1 } else { 2 };
            match s.push(sender, 0, esi, &symbol(&data, &enc, esi)) {
                Received::ReadyToDecode | Received::Decoded(_) => {
                    ready = true;
                    break;
                }
                _ => {}
            }
        }
        if ready {
            break;
        }
    }
    assert!(ready, "enough symbols were planned to decode");
    // Sender 2 still owed symbols of its range: it is told to stop, and
    // nothing counts as in flight from anyone any more.
    assert_eq!(s.stop_senders(0), vec![2]);
    assert_eq!(s.in_flight(1) + s.in_flight(2), 0);
    assert!(s.stop_senders(0).is_empty());
    // What it sends meanwhile is late, not a protocol violation.
    let last = second.last().unwrap();
    let r = s.push(2, 0, last.end() - 1, &symbol(&data, &enc, last.end() - 1));
    assert!(matches!(r, Received::Late | Received::Surplus), "{r:?}");
}
