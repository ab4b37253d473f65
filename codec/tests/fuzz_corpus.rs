//! Replays the committed fuzz corpus (`codec/fuzz/corpus/<target>/*`)
//! through the same entry functions the cargo-fuzz targets call, so every
//! crash ever found stays fixed on stable Rust; then runs each entry on
//! seeded random mutations of that corpus as a quick smoke fuzz.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus folder {} is missing: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!files.is_empty(), "no corpus for {name}");
    files
}

#[test]
fn committed_corpus_replays_cleanly() {
    let mut total = 0;
    for (name, entry) in codec::fuzz_entry::TARGETS {
        for data in corpus(name) {
            entry(&data);
            total += 1;
        }
    }
    assert!(total >= 15, "{total} corpus files");
}

#[test]
fn mutated_corpus_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x00f0_22ed);
    for (name, entry) in codec::fuzz_entry::TARGETS {
        let seeds = corpus(name);
        for _ in 0..1000 {
            let mut data = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..8) {
                match rng.random_range(0..4) {
                    0 if !data.is_empty() => {
                        let i = rng.random_range(0..data.len());
                        data[i] ^= 1 << rng.random_range(0..8);
                    }
                    1 if !data.is_empty() => {
                        let i = rng.random_range(0..data.len());
                        data[i] = rng.random();
                    }
                    2 => data.truncate(rng.random_range(0..=data.len())),
                    _ => data.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
                }
            }
            let outcome = std::panic::catch_unwind(|| entry(&data));
            if outcome.is_err() {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                panic!("{name} failed on input {hex} (add it to the corpus)");
            }
        }
    }
}
