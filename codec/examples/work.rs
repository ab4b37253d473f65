//! Runs one codec operation or its raptorq-direct reference N times, for
//! counting instructions with valgrind: unlike wall or CPU time, the count
//! does not move when other processes share the machine.
//!
//! ```sh
//! cargo build --release -p bitfountain-codec --example work
//! valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/examples/work decode-ours 4194304 16384 3
//! ```
//! Modes: `none` (setup only, to subtract), `decode-ours`, `decode-raptorq`,
//! `encode-ours`, `encode-raptorq`, `source-only-sha1`, `memcpy-sha1`. The
//! decode input loses every tenth source symbol and makes up with repair
//! symbols, like `benches/codec.rs`.

use std::hint::black_box;
use std::process::ExitCode;

use codec::{
    source_symbol, DecodeStep, DigestKey, PieceDecoder, PieceEncoder, PieceParams, Push, SenderId,
    SymbolSize, Verdict,
};
use rand::{Rng, SeedableRng};
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use sha1::{Digest, Sha1};
use wire::Limits;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(len), Some(t), Some(n)) = (
        args.first(),
        args.get(1).and_then(|a| a.parse::<u32>().ok()),
        args.get(2)
            .and_then(|a| a.parse().ok())
            .and_then(SymbolSize::from_bytes),
        args.get(3).and_then(|a| a.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: work MODE PIECE_LEN T N");
        return ExitCode::FAILURE;
    };
    let Ok(params) = PieceParams::new(len, t) else {
        eprintln!("bad piece length / symbol size");
        return ExitCode::FAILURE;
    };
    let mut piece = vec![0u8; len as usize];
    rand::rngs::StdRng::seed_from_u64(1).fill(&mut piece[..]);
    let Ok(enc) = PieceEncoder::new(params, &piece) else {
        return ExitCode::FAILURE;
    };
    let k = params.k();
    let oti =
        ObjectTransmissionInformation::new(u64::from(k * t.bytes()), t.bytes() as u16, 1, 1, 8);
    let direct_decode = |symbols: &[(u32, Vec<u8>)]| {
        let mut dec = SourceBlockDecoder::new(0, &oti, u64::from(k * t.bytes()));
        dec.decode(
            symbols
                .iter()
                .map(|(e, b)| EncodingPacket::new(PayloadId::new(0, *e), b.clone())),
        )
    };
    // Every tenth source symbol lost, made up by repair symbols from the
    // first range that decodes at exactly K.
    let kept: Vec<u32> = (0..k).filter(|e| e % 10 != 3).collect();
    let lost = k - kept.len() as u32;
    let mut symbols = Vec::new();
    for start in (k..k + 100 * (lost + 1)).step_by(lost as usize + 1) {
        let source = kept
            .iter()
            .filter_map(|e| Some((*e, source_symbol(&params, &piece, *e).ok()?.into_owned())));
        let Ok(repair) = enc.repair_symbols(start, lost) else {
            break;
        };
        symbols = source.chain((start..).zip(repair)).collect();
        if direct_decode(&symbols).is_some() {
            break;
        }
    }
    let repair_count = (k / 10).max(1);
    let hash: [u8; 20] = Sha1::digest(&piece).into();
    for _ in 0..n {
        match mode.as_str() {
            "decode-ours" => {
                let mut dec =
                    PieceDecoder::new(params, &Limits::DEFAULT, DigestKey::from_bytes([0; 32]));
                for (esi, bytes) in &symbols {
                    let _ = dec.push(*esi, bytes, SenderId(0));
                }
                let DecodeStep::Decoded(d) = dec.decode() else {
                    return ExitCode::FAILURE;
                };
                black_box(d);
            }
            "decode-raptorq" => {
                black_box(direct_decode(&symbols));
            }
            "encode-ours" => {
                let Ok(e) = PieceEncoder::new(params, &piece) else {
                    return ExitCode::FAILURE;
                };
                let Ok(repair) = e.repair_symbols(k, repair_count) else {
                    return ExitCode::FAILURE;
                };
                black_box(repair.collect::<Vec<_>>());
            }
            "encode-raptorq" => {
                let e = SourceBlockEncoder::new(0, &oti, &piece);
                black_box(e.repair_packets(0, repair_count));
            }
            "source-only-sha1" => {
                // Every source symbol in order, assembled, then hashed.
                let mut dec =
                    PieceDecoder::new(params, &Limits::DEFAULT, DigestKey::from_bytes([0; 32]));
                let mut out = None;
                for (esi, chunk) in (0u32..).zip(piece.chunks(t.bytes() as usize)) {
                    let push = if chunk.len() == t.bytes() as usize {
                        dec.push(esi, chunk, SenderId(0))
                    } else {
                        dec.push_block(esi * t.bytes(), chunk, SenderId(0))
                    };
                    if let Push::Decoded(d) = push {
                        out = Some(d);
                    }
                }
                let Some(Verdict::Good(v)) = out.map(|d| d.verify(&hash)) else {
                    return ExitCode::FAILURE;
                };
                black_box(v.into_data());
            }
            "memcpy-sha1" => {
                let mut buf = Vec::with_capacity(piece.len());
                for block in piece.chunks(16 * 1024) {
                    buf.extend_from_slice(block);
                }
                let got: [u8; 20] = Sha1::digest(&buf).into();
                if got != hash {
                    return ExitCode::FAILURE;
                }
                black_box(buf);
            }
            "none" => {}
            other => {
                eprintln!("unknown mode {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
