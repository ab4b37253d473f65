//! Speed of the `codec` crate, each figure next to its reference measured in
//! the same run:
//!
//! - `encode`, `decode`: ours vs calling raptorq directly on the same data;
//! - `receive`: decode + SHA-1 (the real receive path), and the clean
//!   source-only path vs a plain memcpy + SHA-1 of the piece;
//! - `attribution`: sealing the evidence of a poisoned piece and naming the
//!   poisoner from a good copy;
//! - `outer_rebuild`: rebuilding lost pieces from the outer code.
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use codec::{
    source_symbol, DecodeStep, DigestKey, HashFailure, OuterCode, PieceDecoder, PieceEncoder,
    PieceParams, Push, SenderId, SymbolSize, Verdict,
};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use sha1::{Digest, Sha1};
use wire::{Limits, PieceGeometry};

const SIZES: [(usize, &str); 3] = [(256 << 10, "256KiB"), (1 << 20, "1MiB"), (4 << 20, "4MiB")];

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// One piece, its code, and a K-symbol set that loses every tenth source
/// symbol and makes up with repair symbols (checked to decode at exactly K,
/// so both sides do the same single decode).
struct Case {
    params: PieceParams,
    piece: Vec<u8>,
    oti: ObjectTransmissionInformation,
    symbols: Vec<(u32, Vec<u8>)>,
    label: String,
}

impl Case {
    fn new(len: usize, size: SymbolSize, name: &str) -> Self {
        let piece = random_bytes(len, len as u64 ^ u64::from(size.bytes()));
        let params = PieceParams::new(len as u32, size).expect("params");
        let k = params.k();
        let t = size.bytes();
        let oti = ObjectTransmissionInformation::new(u64::from(k * t), t as u16, 1, 1, 8);
        let enc = PieceEncoder::new(params, &piece).expect("encoder");
        let source: Vec<u32> = (0..k).filter(|e| e % 10 != 3).collect();
        let lost = k - source.len() as u32;
        let mut symbols = Vec::new();
        for start in (k..).step_by(lost as usize + 1) {
            symbols = source
                .iter()
                .map(|e| {
                    (
                        *e,
                        source_symbol(&params, &piece, *e)
                            .expect("src")
                            .into_owned(),
                    )
                })
                .chain(
                    enc.repair_symbols(start, lost)
                        .expect("repair")
                        .enumerate()
                        .map(|(i, s)| (start + i as u32, s)),
                )
                .collect();
            if raptorq_decode(&oti, k, &symbols).is_some() {
                break;
            }
        }
        Case {
            params,
            piece,
            oti,
            symbols,
            label: format!("{name}/T{t}"),
        }
    }

    /// Our receive path up to the decoded piece.
    fn ours_decode(&self) -> codec::DecodedPiece {
        let mut dec = PieceDecoder::new(
            self.params,
            &Limits::DEFAULT,
            DigestKey::from_bytes([3; 32]),
        );
        for (esi, bytes) in &self.symbols {
            let _ = dec.push(*esi, bytes, SenderId(u64::from(*esi % 4)));
        }
        match dec.decode() {
            DecodeStep::Decoded(d) => d,
            other => panic!("{}: {other:?}", self.label),
        }
    }

    /// All source symbols pushed: the piece is assembled, never decoded.
    fn ours_source_only(&self, t: usize) -> codec::DecodedPiece {
        let mut dec = PieceDecoder::new(
            self.params,
            &Limits::DEFAULT,
            DigestKey::from_bytes([3; 32]),
        );
        let mut out = None;
        for (esi, chunk) in (0u32..).zip(self.piece.chunks(t)) {
            let push = if chunk.len() == t {
                dec.push(esi, chunk, SenderId(0))
            } else {
                dec.push_block(esi * t as u32, chunk, SenderId(0))
            };
            if let Push::Decoded(d) = push {
                out = Some(d);
            }
        }
        out.expect("assembled")
    }
}

fn raptorq_decode(
    oti: &ObjectTransmissionInformation,
    k: u32,
    symbols: &[(u32, Vec<u8>)],
) -> Option<Vec<u8>> {
    let mut dec = SourceBlockDecoder::new(0, oti, u64::from(k) * u64::from(oti.symbol_size()));
    dec.decode(
        symbols
            .iter()
            .map(|(e, b)| EncodingPacket::new(PayloadId::new(0, *e), b.clone())),
    )
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (len, name) in SIZES {
        for size in SymbolSize::ALL {
            out.push(Case::new(len, size, name));
        }
    }
    out
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g
}

fn encode(c: &mut Criterion) {
    let mut g = configure(c, "encode");
    for case in cases() {
        // Build the encoder and make 10% repair symbols, as a serving peer does.
        let k = case.params.k();
        let repair = (k / 10).max(1);
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        g.bench_function(format!("ours/{}", case.label), |b| {
            b.iter(|| {
                let enc = PieceEncoder::new(case.params, &case.piece).expect("encoder");
                enc.repair_symbols(k, repair)
                    .expect("repair")
                    .for_each(|s| {
                        black_box(s);
                    });
            })
        });
        g.bench_function(format!("raptorq/{}", case.label), |b| {
            b.iter(|| {
                let enc = SourceBlockEncoder::new(0, &case.oti, &case.piece);
                black_box(enc.repair_packets(0, repair));
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = configure(c, "decode");
    for case in cases() {
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        g.bench_function(format!("ours/{}", case.label), |b| {
            b.iter(|| black_box(case.ours_decode()))
        });
        g.bench_function(format!("raptorq/{}", case.label), |b| {
            b.iter(|| {
                black_box(
                    raptorq_decode(&case.oti, case.params.k(), &case.symbols).expect("decoded"),
                )
            })
        });
    }
    g.finish();
}

fn receive(c: &mut Criterion) {
    let mut g = configure(c, "receive");
    for case in cases() {
        let hash = sha1(&case.piece);
        let t = case.params.t() as usize;
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        g.bench_function(format!("decode+sha1/{}", case.label), |b| {
            b.iter(|| match case.ours_decode().verify(&hash) {
                Verdict::Good(v) => black_box(v.into_data()),
                Verdict::Bad(_) => panic!("hash"),
            })
        });
        g.bench_function(format!("source_only+sha1/{}", case.label), |b| {
            b.iter(|| match case.ours_source_only(t).verify(&hash) {
                Verdict::Good(v) => black_box(v.into_data()),
                Verdict::Bad(_) => panic!("hash"),
            })
        });
        // The reference: a plain BitTorrent client copies the blocks into a
        // piece buffer and hashes it.
        g.bench_function(format!("memcpy+sha1/{}", case.label), |b| {
            b.iter(|| {
                let mut buf = Vec::with_capacity(case.piece.len());
                for block in case.piece.chunks(t) {
                    buf.extend_from_slice(block);
                }
                assert_eq!(sha1(&buf), hash);
                black_box(buf)
            })
        });
    }
    g.finish();
}

/// A hash failure of `case`: sender 2 poisoned one of its repair symbols.
fn poisoned(case: &Case) -> HashFailure {
    let mut dec = PieceDecoder::new(
        case.params,
        &Limits::DEFAULT,
        DigestKey::from_bytes([9; 32]),
    );
    let mut poisoned_one = false;
    for (esi, bytes) in &case.symbols {
        let sender = SenderId(u64::from(*esi % 4));
        let mut bytes = bytes.clone();
        if !poisoned_one && *esi >= case.params.k() && sender == SenderId(2) {
            bytes[17] ^= 0x40;
            poisoned_one = true;
        }
        let _ = dec.push(*esi, &bytes, sender);
    }
    let DecodeStep::Decoded(d) = dec.decode() else {
        panic!("decode")
    };
    match d.verify(&sha1(&case.piece)) {
        Verdict::Bad(f) => f,
        Verdict::Good(_) => panic!("poison missed"),
    }
}

fn attribution(c: &mut Criterion) {
    let mut g = configure(c, "attribution");
    for (len, name) in [(1 << 20, "1MiB"), (4 << 20, "4MiB")] {
        let case = Case::new(len, SymbolSize::T1024, name);
        let failure = poisoned(&case);
        assert_eq!(failure.attribute(&case.piece), Ok(vec![SenderId(2)]));
        g.throughput(Throughput::Bytes(len as u64));
        // Sealing the evidence into keyed digests (once, when the hash fails).
        g.bench_function(format!("seal/{}", case.label), |b| {
            b.iter_batched(
                || poisoned(&case),
                |f| black_box(f.into_provenance()),
                BatchSize::PerIteration,
            )
        });
        // Attribution from the sealed digests once a good copy arrives.
        let provenance = poisoned(&case).into_provenance();
        g.bench_function(format!("attribute_sealed/{}", case.label), |b| {
            b.iter(|| assert_eq!(provenance.attribute(&case.piece), Ok(vec![SenderId(2)])))
        });
        // Attribution while the symbols are still held (no digests needed).
        g.bench_function(format!("attribute_held/{}", case.label), |b| {
            b.iter(|| assert_eq!(failure.attribute(&case.piece), Ok(vec![SenderId(2)])))
        });
    }
    g.finish();
}

fn outer_rebuild(c: &mut Criterion) {
    let mut g = configure(c, "outer_rebuild");
    let (n, piece_len, lose) = (64u32, 256 * 1024u32, 6usize);
    let data = random_bytes((n * piece_len) as usize, 5);
    let geometry = PieceGeometry::new(piece_len, u64::from(n * piece_len)).expect("geometry");
    let code = OuterCode::new(
        geometry,
        SymbolSize::T1024,
        OuterCode::repair_count_for(n, 10),
    )
    .expect("code");
    let pieces: Vec<&[u8]> = data.chunks(piece_len as usize).collect();
    let repairs = code.repair_pieces(&pieces).expect("repairs");
    let hashes: Vec<[u8; 20]> = pieces.iter().map(|p| sha1(p)).collect();
    let repair_hashes: Vec<[u8; 32]> = repairs.iter().map(|r| OuterCode::repair_hash(r)).collect();
    let originals: Vec<Option<&[u8]>> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (i % 10 != 4 || i / 10 >= lose).then_some(*p))
        .collect();
    let repair_in: Vec<Option<&[u8]>> = repairs.iter().map(|r| Some(&r[..])).collect();
    // Throughput counted in rebuilt bytes.
    g.throughput(Throughput::Bytes(lose as u64 * u64::from(piece_len)));
    g.bench_function("64x256KiB/lose6/T1024", |b| {
        b.iter(|| {
            let rebuilt = code
                .rebuild(&originals, &repair_in, &hashes, &repair_hashes)
                .expect("rebuilt");
            assert_eq!(rebuilt.pieces.len(), lose);
            black_box(rebuilt)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = encode, decode, receive, attribution, outer_rebuild
}
criterion_main!(benches);
