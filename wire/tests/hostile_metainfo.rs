//! The hostile metainfo corpus: every malformed torrent is refused with the
//! specific error its name promises; every prefix and byte flip of valid
//! torrents yields an error or a value, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use wire::bencode::BencodeError as B;
use wire::{Limits, Metainfo, MetainfoError as E, PathError as P};

fn corpus(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir)
}

type Check = fn(&E) -> bool;

/// Every file of `bad-torrents/` and the error it must produce.
const EXPECTED: &[(&str, Check)] = &[
    ("not-bencode", |e| {
        matches!(e, E::Bencode(B::UnexpectedByte { at: 0, .. }))
    }),
    ("truncated-in-the-middle", |e| {
        matches!(
            e,
            E::Bencode(B::UnexpectedEnd { .. } | B::LengthBeyondInput { .. })
        )
    }),
    ("trailing-garbage", |e| {
        matches!(e, E::Bencode(B::TrailingData { count: 7, .. }))
    }),
    ("root-is-a-list", |e| matches!(e, E::NotADict("list"))),
    ("missing-info", |e| matches!(e, E::MissingField("info"))),
    ("info-is-a-string", |e| {
        matches!(e, E::WrongType { field: "info", .. })
    }),
    ("missing-name", |e| {
        matches!(e, E::MissingField("info.name"))
    }),
    ("name-is-dotdot", |e| {
        matches!(e, E::BadName(P::DotComponent(_)))
    }),
    ("name-with-slash", |e| {
        matches!(e, E::BadName(P::Separator(_)))
    }),
    ("name-not-utf8", |e| matches!(e, E::BadName(P::NotUtf8))),
    ("missing-piece-length", |e| {
        matches!(e, E::MissingField("info.piece length"))
    }),
    ("piece-length-zero", |e| {
        matches!(e, E::PieceLengthOutOfRange { value: 0, .. })
    }),
    ("piece-length-negative", |e| {
        matches!(e, E::PieceLengthOutOfRange { value: -16384, .. })
    }),
    ("piece-length-absurd", |e| {
        matches!(e, E::PieceLengthOutOfRange { .. })
    }),
    ("missing-pieces", |e| {
        matches!(e, E::MissingField("info.pieces"))
    }),
    ("pieces-not-multiple-of-20", |e| {
        matches!(e, E::PiecesNotMultipleOf20(59))
    }),
    ("pieces-too-few-for-length", |e| {
        matches!(
            e,
            E::PieceCountMismatch {
                found: 2,
                expected: 3,
                ..
            }
        )
    }),
    ("pieces-too-many-for-length", |e| {
        matches!(
            e,
            E::PieceCountMismatch {
                found: 4,
                expected: 3,
                ..
            }
        )
    }),
    ("both-length-and-files", |e| {
        matches!(e, E::BothLengthAndFiles)
    }),
    ("neither-length-nor-files", |e| {
        matches!(e, E::NeitherLengthNorFiles)
    }),
    ("negative-length", |e| {
        matches!(e, E::NegativeLength { length: -5, .. })
    }),
    ("zero-total-length", |e| matches!(e, E::Empty)),
    ("empty-files-list", |e| matches!(e, E::NoFiles)),
    ("files-is-a-dict", |e| {
        matches!(
            e,
            E::WrongType {
                field: "info.files",
                ..
            }
        )
    }),
    ("file-lengths-overflow", |e| {
        matches!(e, E::TotalTooLarge { .. })
    }),
    ("file-negative-length", |e| {
        matches!(
            e,
            E::NegativeLength {
                index: 0,
                length: -1
            }
        )
    }),
    ("path-dotdot", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::DotComponent(_),
                ..
            }
        )
    }),
    ("path-absolute", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::Separator(_),
                ..
            }
        )
    }),
    ("path-separator-inside", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::Separator(_),
                ..
            }
        )
    }),
    ("path-backslash", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::Separator(_),
                ..
            }
        )
    }),
    ("path-empty-list", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::Empty,
                ..
            }
        )
    }),
    ("path-empty-component", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::EmptyComponent,
                ..
            }
        )
    }),
    ("path-nul-byte", |e| {
        matches!(e, E::BadPath { reason: P::Nul, .. })
    }),
    ("path-component-too-long", |e| {
        matches!(
            e,
            E::BadPath {
                reason: P::ComponentTooLong { len: 300, .. },
                ..
            }
        )
    }),
    ("path-missing", |e| {
        matches!(e, E::MissingField("info.files[].path"))
    }),
    (
        "duplicate-paths",
        |e| matches!(e, E::DuplicatePath(p) if p == "a"),
    ),
    (
        "file-and-folder-clash",
        |e| matches!(e, E::PathConflict(p) if p == "a"),
    ),
    ("nesting-too-deep", |e| {
        matches!(e, E::Bencode(B::TooDeep { limit: 64, .. }))
    }),
    ("non-canonical-integer", |e| {
        matches!(e, E::Bencode(B::NonCanonicalInteger { .. }))
    }),
    ("duplicate-keys", |e| {
        matches!(e, E::Bencode(B::DuplicateKey { .. }))
    }),
    ("string-length-beyond-input", |e| {
        matches!(
            e,
            E::Bencode(B::LengthBeyondInput {
                declared: 99999,
                ..
            })
        )
    }),
    ("announce-list-not-a-list", |e| {
        matches!(
            e,
            E::WrongType {
                field: "announce-list",
                ..
            }
        )
    }),
];

#[test]
fn every_malformed_torrent_gets_its_specific_error() {
    let dir = corpus("bad-torrents");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "corpus has only {} files", files.len());
    for file in &files {
        let name = file
            .strip_suffix(".torrent")
            .expect("corpus files end in .torrent");
        let (_, check) = EXPECTED
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{file} has no expected error in EXPECTED"));
        let bytes = std::fs::read(dir.join(file)).unwrap();
        match Metainfo::from_bytes(&bytes, &Limits::DEFAULT) {
            Ok(_) => panic!("{file} was accepted"),
            Err(e) => assert!(check(&e), "{file}: wrong error: {e:?}"),
        }
    }
    assert_eq!(
        files.len(),
        EXPECTED.len(),
        "EXPECTED lists a case that is not in the corpus"
    );
}

fn good_torrents() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus("good-torrents"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn valid_torrents_from_several_tools_parse() {
    let good = good_torrents();
    assert!(good.len() >= 4);
    for (name, bytes) in good {
        let meta = Metainfo::from_bytes(&bytes, &Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(meta.info.total_length() > 0);
        assert!(!meta.tracker_tiers().is_empty(), "{name} lost its tracker");
    }
}

#[test]
fn every_prefix_and_byte_flip_is_an_error_or_a_value() {
    let limits = Limits::DEFAULT;
    for (name, bytes) in good_torrents() {
        let original = Metainfo::from_bytes(&bytes, &limits).unwrap();
        for len in 0..bytes.len() {
            assert!(
                Metainfo::from_bytes(&bytes[..len], &limits).is_err(),
                "{name}: prefix of {len} bytes accepted"
            );
        }
        let mut flipped = bytes.clone();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x20, 0x80, 0xff] {
                flipped[at] ^= mask;
                // Either outcome is fine; a value must still be consistent,
                // and a change inside `info` must change the info-hash.
                if let Ok(meta) = Metainfo::from_bytes(&flipped, &limits) {
                    let total: u64 = meta.info.files.iter().map(|f| f.length).sum();
                    assert_eq!(total, meta.info.total_length());
                    if meta.info.raw != original.info.raw {
                        assert_ne!(meta.info.info_hash, original.info.info_hash);
                    }
                }
                flipped[at] ^= mask;
            }
        }
    }
}
