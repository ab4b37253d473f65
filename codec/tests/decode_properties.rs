//! Acceptance 1: decoding returns the exact piece for random piece sizes, T,
//! loss patterns and sender mixes, and nearly always at exactly K symbols.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use codec::{
    DecodeStep, DigestKey, PieceDecoder, PieceEncoder, PieceParams, Push, SenderId, SymbolSize,
    Verdict,
};
use common::{random_piece, rng, symbol};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use sha1::{Digest, Sha1};
use wire::{Limits, BLOCK_SIZE};

#[derive(Debug, Clone, Copy)]
enum Mix {
    /// Every source symbol, shuffled, some sent twice by different senders.
    SourceOnly,
    /// Only repair symbols, some with ESIs near the 2^24 limit.
    RepairOnly,
    /// Source symbols with random loss, repair symbols to make up.
    Mixed,
    /// Legacy 16 KiB blocks from one sender plus coded symbols from others.
    WithLegacyBlocks,
}

/// One delivery: a coded symbol or a legacy block (offset, bytes).
enum Delivery {
    Symbol(u32, Vec<u8>, SenderId),
    Block(u32, Vec<u8>, SenderId),
}

/// A piece and its encoder.
struct Case {
    params: PieceParams,
    piece: Vec<u8>,
    enc: PieceEncoder,
}

impl Case {
    fn new(rng: &mut StdRng, piece_len: u32, size: SymbolSize) -> Self {
        let piece = random_piece(rng, piece_len as usize);
        let params = PieceParams::new(piece_len, size).unwrap();
        let enc = PieceEncoder::new(params, &piece).unwrap();
        Case { params, piece, enc }
    }
}

/// Builds a delivery schedule for `mix` with source loss `loss`.
fn schedule(
    rng: &mut StdRng,
    case: &Case,
    mix: Mix,
    loss: f64,
    senders: u64,
    at_least_one_loss: bool,
) -> Vec<Delivery> {
    let Case { params, piece, enc } = case;
    let k = params.k();
    let sender = |rng: &mut StdRng| SenderId(rng.random_range(0..senders));
    let mut out = Vec::new();
    let repair_from = |rng: &mut StdRng, out: &mut Vec<Delivery>, count: u32, high: bool| {
        // A fresh, never-overlapping ESI range per sender, as the session
        // hands them out; optionally at the top of the 24-bit space.
        let base = if high {
            (1 << 24) - count - 1
        } else {
            k + rng.random_range(0..1000)
        };
        for esi in base..base + count {
            let s = sender(rng);
            out.push(Delivery::Symbol(esi, symbol(params, piece, enc, esi), s));
        }
    };
    match mix {
        Mix::SourceOnly => {
            for esi in 0..k {
                let s = sender(rng);
                out.push(Delivery::Symbol(esi, symbol(params, piece, enc, esi), s));
                if rng.random_bool(0.1) {
                    let s = sender(rng);
                    out.push(Delivery::Symbol(esi, symbol(params, piece, enc, esi), s));
                }
            }
        }
        Mix::RepairOnly => {
            // The top of the ESI space is one fixed set per K, so only the
            // property test (which needs no rate) uses it.
            let high = !at_least_one_loss && rng.random_bool(0.3);
            repair_from(rng, &mut out, k + 6, high);
        }
        Mix::Mixed => {
            let mut lost = 0;
            for esi in 0..k {
                if rng.random_bool(loss) || (at_least_one_loss && esi == 0) {
                    lost += 1;
                    continue;
                }
                let s = sender(rng);
                out.push(Delivery::Symbol(esi, symbol(params, piece, enc, esi), s));
            }
            repair_from(rng, &mut out, lost + 6, false);
        }
        Mix::WithLegacyBlocks => {
            let legacy = SenderId(senders);
            let mut lost = 0;
            let mut offset = 0;
            while offset < params.piece_len() {
                let end = (offset + BLOCK_SIZE).min(params.piece_len());
                if rng.random_bool(loss) || (at_least_one_loss && offset == 0) {
                    lost += (end - offset).div_ceil(params.t());
                } else {
                    out.push(Delivery::Block(
                        offset,
                        piece[offset as usize..end as usize].to_vec(),
                        legacy,
                    ));
                }
                offset = end;
            }
            repair_from(rng, &mut out, lost + 6, false);
        }
    }
    out.shuffle(rng);
    out
}

/// How a delivery schedule ended.
struct Fed {
    decoded: Option<codec::DecodedPiece>,
    /// Symbols the piece was decoded from (or held when it was not).
    held: u32,
    gave_up: bool,
}

/// Pushes deliveries in order, decoding whenever the decoder is ready,
/// until a piece comes out, the decoder gives up or deliveries run out.
fn deliver(dec: &mut PieceDecoder, schedule: Vec<Delivery>) -> Fed {
    for d in schedule {
        let push = match &d {
            Delivery::Symbol(esi, bytes, s) => dec.push(*esi, bytes, *s),
            Delivery::Block(offset, bytes, s) => dec.push_block(*offset, bytes, *s),
        };
        let fed = match push {
            Push::Decoded(d) => Fed {
                held: d.symbols_used(),
                decoded: Some(d),
                gave_up: false,
            },
            Push::ReadyToDecode => match dec.decode() {
                DecodeStep::Decoded(d) => Fed {
                    held: d.symbols_used(),
                    decoded: Some(d),
                    gave_up: false,
                },
                DecodeStep::GaveUp => Fed {
                    decoded: None,
                    held: dec.buffered(),
                    gave_up: true,
                },
                DecodeStep::NeedMore { .. } | DecodeStep::Finished => continue,
            },
            Push::NeedMore { .. } | Push::Rejected(_) => continue,
        };
        return fed;
    }
    Fed {
        decoded: None,
        held: dec.buffered(),
        gave_up: false,
    }
}

fn mix_strategy() -> impl Strategy<Value = Mix> {
    prop_oneof![
        Just(Mix::SourceOnly),
        Just(Mix::RepairOnly),
        Just(Mix::Mixed),
        Just(Mix::WithLegacyBlocks),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoding_returns_the_exact_piece(
        piece_len in 1u32..=(192 * 1024),
        size in prop::sample::select(SymbolSize::ALL.to_vec()),
        mix in mix_strategy(),
        loss in 0.0f64..0.7,
        senders in 1u64..=4,
        seed: u64,
    ) {
        let mut rng = rng(seed);
        let case = Case::new(&mut rng, piece_len, size);
        let sched = schedule(&mut rng, &case, mix, loss, senders, false);
        let mut dec = PieceDecoder::new(case.params, &Limits::DEFAULT, DigestKey::random());
        let fed = deliver(&mut dec, sched);
        let decoded = fed.decoded.expect("piece decoded");
        prop_assert_eq!(decoded.data(), &case.piece[..]);
        let hash: [u8; 20] = Sha1::digest(&case.piece).into();
        match decoded.verify(&hash) {
            Verdict::Good(v) => prop_assert!(v.audit_surplus().is_empty()),
            Verdict::Bad(_) => prop_assert!(false, "hash failed on honest symbols"),
        }
    }
}

/// 12,000 trials over the four sender mixes (3,000 each): at least 99.5%
/// must decode at exactly K. Every trial of the three mixes that lose source
/// symbols really runs raptorq; those must each reach 99% on their own (a
/// K-symbol set is rank-deficient roughly 1 time in 200).
#[test]
fn decodes_at_exactly_k_in_nearly_every_trial() {
    const PER_MIX: u32 = 3_000;
    let mixes = [
        (Mix::SourceOnly, "source only"),
        (Mix::RepairOnly, "repair only"),
        (Mix::Mixed, "mixed"),
        (Mix::WithLegacyBlocks, "legacy blocks + repair"),
    ];
    let mut rng = rng(0x00c0_dec0);
    let mut extra: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_mix: BTreeMap<&str, u32> = BTreeMap::new();
    let limits = Limits::DEFAULT;
    for trial in 0..PER_MIX * 4 {
        let (mix, name) = mixes[(trial % 4) as usize];
        let piece_len = rng.random_range(16 * 1024..=64 * 1024);
        let case = Case::new(&mut rng, piece_len, SymbolSize::T1024);
        let (params, piece) = (case.params, &case.piece);
        let loss = rng.random_range(0.05..0.6);
        let sched = schedule(&mut rng, &case, mix, loss, 4, true);
        let mut dec = PieceDecoder::new(params, &limits, DigestKey::random());
        let fed = deliver(&mut dec, sched);
        let key = match &fed.decoded {
            Some(d) => {
                assert_eq!(d.data(), &piece[..], "trial {trial}");
                assert_eq!(
                    d.used_repair(),
                    !matches!(mix, Mix::SourceOnly),
                    "trial {trial}"
                );
                format!("+{}", fed.held - params.k())
            }
            None => {
                assert!(fed.gave_up, "trial {trial} ran out of symbols");
                format!("gave up after {} attempts", limits.decode_attempts)
            }
        };
        if key == "+0" {
            *by_mix.entry(name).or_default() += 1;
        }
        *extra.entry(key).or_default() += 1;
    }
    let trials = PER_MIX * 4;
    let exact = extra.get("+0").copied().unwrap_or(0);
    println!("extra symbols needed over {trials} trials (T = 1024, 16-64 KiB pieces):");
    for (k, v) in &extra {
        println!(
            "  {k:>24}: {v:>6} ({:.2}%)",
            f64::from(*v) * 100.0 / f64::from(trials)
        );
    }
    for (_, name) in mixes {
        let ok = by_mix.get(name).copied().unwrap_or(0);
        println!("  {name:>24}: {ok}/{PER_MIX} at exactly K");
        assert!(
            f64::from(ok) / f64::from(PER_MIX) >= 0.99,
            "{name}: {ok}/{PER_MIX}"
        );
    }
    assert!(
        f64::from(exact) / f64::from(trials) >= 0.995,
        "only {exact}/{trials} decoded at exactly K"
    );
}
