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
//! Times are this thread's CPU time (see `thread_cpu`), and each
//! ours/reference pair is measured alternately (see `paired`), so the ratios
//! hold on a busy machine. The run ends by printing the tables of
//! `codec/README.md` from criterion's output.
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use codec::{
    source_symbol, DecodeStep, DigestKey, HashFailure, OuterCode, PieceDecoder, PieceEncoder,
    PieceParams, Push, SenderId, SymbolSize, Verdict,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use sha1::{Digest, Sha1};
use wire::{Limits, PieceGeometry, BLOCK_SIZE};

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

/// CPU time consumed by this thread (user + system, so page faults count).
/// Unlike wall time it leaves out the time other processes hold the CPU:
/// this machine is shared with parallel builds, and wall-clock figures
/// swung by ±50% from run to run while CPU time stays put.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes one timespec into `ts`, which is a
    // valid, exclusively borrowed local for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Benchmarks `f` in CPU time, running the untimed `before` ahead of each
/// call (setup, or the other side of a pair).
fn cpu_bench(g: &mut BenchmarkGroup<'_, WallTime>, id: String, before: &dyn Fn(), f: &dyn Fn()) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                before();
                let start = thread_cpu();
                f();
                total += thread_cpu() - start;
            }
            total
        })
    });
}

/// Measures `ours` and `reference` as two benchmarks whose iterations
/// alternate with each other: each timed run of one follows an untimed run
/// of the other, so both see the same cache and allocator state.
fn paired(
    g: &mut BenchmarkGroup<'_, WallTime>,
    ours: (String, &dyn Fn()),
    reference: (String, &dyn Fn()),
) {
    cpu_bench(g, ours.0, reference.1, ours.1);
    cpu_bench(g, reference.0, ours.1, reference.1);
}

fn encode(c: &mut Criterion) {
    let mut g = configure(c, "encode");
    for case in cases() {
        // Build the encoder and make 10% repair symbols, as a serving peer does.
        let k = case.params.k();
        let repair = (k / 10).max(1);
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        let ours = || {
            let enc = PieceEncoder::new(case.params, &case.piece).expect("encoder");
            let symbols: Vec<Vec<u8>> = enc.repair_symbols(k, repair).expect("repair").collect();
            black_box(symbols);
        };
        let direct = || {
            let enc = SourceBlockEncoder::new(0, &case.oti, &case.piece);
            black_box(enc.repair_packets(0, repair));
        };
        paired(
            &mut g,
            (format!("ours/{}", case.label), &ours),
            (format!("raptorq/{}", case.label), &direct),
        );
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = configure(c, "decode");
    for case in cases() {
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        let ours = || {
            black_box(case.ours_decode());
        };
        let direct = || {
            black_box(raptorq_decode(&case.oti, case.params.k(), &case.symbols).expect("decoded"));
        };
        paired(
            &mut g,
            (format!("ours/{}", case.label), &ours),
            (format!("raptorq/{}", case.label), &direct),
        );
    }
    g.finish();
}

fn receive(c: &mut Criterion) {
    let mut g = configure(c, "receive");
    for case in cases() {
        let hash = sha1(&case.piece);
        let t = case.params.t() as usize;
        g.throughput(Throughput::Bytes(case.piece.len() as u64));
        let receive = || match case.ours_decode().verify(&hash) {
            Verdict::Good(v) => {
                black_box(v.into_data());
            }
            Verdict::Bad(_) => panic!("hash"),
        };
        cpu_bench(
            &mut g,
            format!("decode+sha1/{}", case.label),
            &|| {},
            &receive,
        );
        let source_only = || match case.ours_source_only(t).verify(&hash) {
            Verdict::Good(v) => {
                black_box(v.into_data());
            }
            Verdict::Bad(_) => panic!("hash"),
        };
        // The reference: a plain BitTorrent client copies 16 KiB blocks into
        // a piece buffer and hashes it.
        let plain = || {
            let mut buf = Vec::with_capacity(case.piece.len());
            for block in case.piece.chunks(BLOCK_SIZE as usize) {
                buf.extend_from_slice(block);
            }
            assert_eq!(sha1(&buf), hash);
            black_box(buf);
        };
        paired(
            &mut g,
            (format!("source_only+sha1/{}", case.label), &source_only),
            (format!("memcpy+sha1/{}", case.label), &plain),
        );
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
        // The closure runs once per timed call; the failure it consumes is
        // made by the untimed setup just before.
        let next = std::cell::RefCell::new(None);
        cpu_bench(
            &mut g,
            format!("seal/{}", case.label),
            &|| *next.borrow_mut() = Some(poisoned(&case)),
            &|| {
                let f = next.borrow_mut().take().expect("set up");
                black_box(f.into_provenance());
            },
        );
        // Attribution from the sealed digests once a good copy arrives.
        let provenance = poisoned(&case).into_provenance();
        cpu_bench(
            &mut g,
            format!("attribute_sealed/{}", case.label),
            &|| {},
            &|| assert_eq!(provenance.attribute(&case.piece), Ok(vec![SenderId(2)])),
        );
        // Attribution while the symbols are still held (no digests needed).
        cpu_bench(
            &mut g,
            format!("attribute_held/{}", case.label),
            &|| {},
            &|| assert_eq!(failure.attribute(&case.piece), Ok(vec![SenderId(2)])),
        );
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
    cpu_bench(&mut g, "64x256KiB/lose6/T1024".into(), &|| {}, &|| {
        let rebuilt = code
            .rebuild(&originals, &repair_in, &hashes, &repair_hashes)
            .expect("rebuilt");
        assert_eq!(rebuilt.pieces.len(), lose);
        black_box(rebuilt);
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = encode, decode, receive, attribution, outer_rebuild
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_tables();
}

/// Median and fastest-sample time per iteration (ms) of one benchmark, from
/// criterion's output folder.
fn timing(group: &str, id: &str) -> Option<(f64, f64)> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| std::path::Path::new(&d).join("criterion"))
        })
        .unwrap_or_else(|| "target/criterion".into());
    let dir = root.join(group).join(id.replace('/', "_")).join("new");
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    let median = read("estimates.json")?["median"]["point_estimate"].as_f64()? / 1e6;
    let sample = read("sample.json")?;
    let (iters, times) = (sample["iters"].as_array()?, sample["times"].as_array()?);
    let fastest = iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
        .fold(f64::INFINITY, f64::min)
        / 1e6;
    Some((median, fastest))
}

/// Prints the markdown tables of the README: medians, and in brackets the
/// fastest sample (least disturbed by other load); ratios are ours/reference.
fn print_tables() {
    let cell = |t: Option<(f64, f64)>| t.map_or("-".into(), |(m, f)| format!("{m:.3} ({f:.3})"));
    let ratio = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} ({:.2})", a.0 / b.0, a.1 / b.1),
        _ => "-".into(),
    };
    println!("\n| piece | T | encode: ours | raptorq | ratio | decode: ours | raptorq | ratio | decode+SHA-1 | source-only+SHA-1 | memcpy+SHA-1 | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (_, size) in SIZES {
        for t in SymbolSize::ALL {
            let l = format!("{size}/T{}", t.bytes());
            let (eo, er) = (
                timing("encode", &format!("ours/{l}")),
                timing("encode", &format!("raptorq/{l}")),
            );
            let (d_o, dr) = (
                timing("decode", &format!("ours/{l}")),
                timing("decode", &format!("raptorq/{l}")),
            );
            let rs = timing("receive", &format!("decode+sha1/{l}"));
            let so = timing("receive", &format!("source_only+sha1/{l}"));
            let mc = timing("receive", &format!("memcpy+sha1/{l}"));
            println!(
                "| {size} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.bytes(),
                cell(eo),
                cell(er),
                ratio(eo, er),
                cell(d_o),
                cell(dr),
                ratio(d_o, dr),
                cell(rs),
                cell(so),
                cell(mc),
                ratio(so, mc)
            );
        }
    }
    println!("\n| attribution (T = 1024) | 1 MiB piece | 4 MiB piece | per MiB |");
    println!("|---|---|---|---|");
    for (what, id) in [
        ("seal into digests", "seal"),
        ("attribute from digests", "attribute_sealed"),
        ("attribute from held symbols", "attribute_held"),
    ] {
        let one = timing("attribution", &format!("{id}/1MiB/T1024"));
        let four = timing("attribution", &format!("{id}/4MiB/T1024"));
        let per = one.map_or("-".into(), |o| format!("{:.2} ms", o.0));
        println!("| {what} | {} | {} | {per} |", cell(one), cell(four));
    }
    if let Some((m, f)) = timing("outer_rebuild", "64x256KiB/lose6/T1024") {
        println!(
            "\nouter rebuild, 6 of 64 pieces of 256 KiB lost: {m:.1} ms ({f:.1}), {:.0} MiB/s of rebuilt pieces",
            1.5 / (m / 1000.0)
        );
    }
}
