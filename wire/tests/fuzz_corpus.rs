//! Replays the committed fuzz corpus (`wire/fuzz/corpus/<target>/*`) through
//! the same entry functions the cargo-fuzz targets call, so every crash ever
//! found stays fixed on stable Rust.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

#[test]
fn committed_corpus_replays_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, entry) in wire::fuzz_entry::TARGETS {
        let dir = root.join(name);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus folder {} is missing: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "no corpus for {name}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            entry(&data);
            total += 1;
        }
    }
    // Also every file of the metainfo corpora through the metainfo entries.
    for dir in ["tests/corpus/bad-torrents", "tests/corpus/good-torrents"] {
        for file in std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap()
        {
            let data = std::fs::read(file.unwrap().path()).unwrap();
            wire::fuzz_entry::metainfo(&data);
            wire::fuzz_entry::bencode_doc(&data);
            total += 1;
        }
    }
    assert!(total > 20);
}
