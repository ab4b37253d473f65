//! Acceptance 3: with 10% repair pieces, losing any 10% of the original
//! pieces (random or adversarially chosen) still rebuilds the file byte for
//! byte; pieces that hash wrong are refused before use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use codec::outer::REPAIR_HEADROOM;
use codec::{Action, OuterCode, OuterError, PieceRef, SymbolSize};
use common::{random_piece, rng};
use rand::seq::index::sample;
use rand::Rng;
use sha1::{Digest, Sha1};
use wire::PieceGeometry;

/// A file cut into pieces, with its outer code and every hash.
struct File {
    code: OuterCode,
    pieces: Vec<Vec<u8>>,
    hashes: Vec<[u8; 20]>,
    repairs: Vec<Vec<u8>>,
    repair_hashes: Vec<[u8; 32]>,
}

impl File {
    fn new(seed: u64, piece_len: u32, total: u64, size: SymbolSize, percent: u32) -> Self {
        let mut rng = rng(seed);
        let data = random_piece(&mut rng, total as usize);
        let geometry = PieceGeometry::new(piece_len, total).unwrap();
        let repair_count = OuterCode::repair_count_for(geometry.piece_count(), percent);
        let code = OuterCode::new(geometry, size, repair_count).unwrap();
        let pieces: Vec<Vec<u8>> = data
            .chunks(piece_len as usize)
            .map(<[u8]>::to_vec)
            .collect();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let repairs = code.repair_pieces(&refs).unwrap();
        assert_eq!(repairs.len() as u32, repair_count);
        assert!(repairs.iter().all(|r| r.len() == code.repair_piece_len()));
        File {
            code,
            hashes: pieces.iter().map(|p| Sha1::digest(p).into()).collect(),
            repair_hashes: repairs.iter().map(|r| OuterCode::repair_hash(r)).collect(),
            pieces,
            repairs,
        }
    }

    fn n(&self) -> usize {
        self.pieces.len()
    }

    /// Rebuilds with the originals in `lost` missing and every repair piece.
    fn rebuild_without(&self, lost: &[usize]) -> Result<codec::Rebuilt, OuterError> {
        let originals: Vec<Option<&[u8]>> = (0..self.n())
            .map(|i| (!lost.contains(&i)).then_some(&self.pieces[i][..]))
            .collect();
        let repairs: Vec<Option<&[u8]>> = self.repairs.iter().map(|r| Some(&r[..])).collect();
        self.code
            .rebuild(&originals, &repairs, &self.hashes, &self.repair_hashes)
    }

    fn assert_rebuilds(&self, lost: &[usize], what: &str) {
        let rebuilt = self
            .rebuild_without(lost)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(rebuilt.refused.is_empty());
        let mut want: Vec<usize> = lost.to_vec();
        want.sort_unstable();
        let got: Vec<usize> = rebuilt.pieces.iter().map(|(i, _)| *i as usize).collect();
        assert_eq!(got, want, "{what}");
        for (i, bytes) in &rebuilt.pieces {
            assert_eq!(bytes, &self.pieces[*i as usize], "{what}: piece {i}");
        }
    }
}

#[test]
fn random_ten_percent_loss_rebuilds_byte_for_byte() {
    let mut rng = rng(42);
    for (trial, n) in [10u32, 20, 37, 64, 100, 150]
        .into_iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let piece_len = 16 * 1024;
        let last = rng.random_range(1..=piece_len);
        let total = u64::from(n - 1) * u64::from(piece_len) + u64::from(last);
        let file = File::new(trial as u64, piece_len, total, SymbolSize::T1024, 10);
        assert_eq!(file.code.repair_count(), n.div_ceil(10) + REPAIR_HEADROOM);
        let lose = (n as usize).div_ceil(10);
        let lost = sample(&mut rng, n as usize, lose).into_vec();
        file.assert_rebuilds(&lost, &format!("trial {trial}, n {n}"));
    }
}

#[test]
fn adversarial_ten_percent_loss_rebuilds_byte_for_byte() {
    let n = 120usize;
    let file = File::new(
        1,
        16 * 1024,
        (n as u64 - 1) * 16 * 1024 + 999,
        SymbolSize::T1024,
        10,
    );
    let ten = n / 10;
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("first run", (0..ten).collect()),
        ("last run (with the short piece)", (n - ten..n).collect()),
        ("middle run", (55..55 + ten).collect()),
        ("first and last", vec![0, n - 1]),
        ("every tenth", (0..n).step_by(10).collect()),
        ("both ends", (0..ten / 2).chain(n - ten / 2..n).collect()),
        ("one piece", vec![n / 2]),
    ];
    for (what, lost) in cases {
        assert!(lost.len() <= ten);
        file.assert_rebuilds(&lost, what);
    }
    // Nothing lost: nothing to do.
    assert!(file.rebuild_without(&[]).unwrap().pieces.is_empty());
}

#[test]
fn other_shapes_rebuild() {
    // Piece length not a multiple of T (two stripes, the second short), one
    // piece only, and the larger symbol sizes.
    let odd = File::new(3, 1500, 40 * 1500 - 7, SymbolSize::T1024, 10);
    assert_eq!(odd.code.repair_piece_len(), 2048);
    odd.assert_rebuilds(&[0, 17, 39, 20], "odd piece length");
    let single = File::new(4, 4096, 100, SymbolSize::T1024, 100);
    single.assert_rebuilds(&[0], "single short piece");
    let big = File::new(5, 64 * 1024, 30 * 64 * 1024, SymbolSize::T16384, 10);
    assert_eq!(big.code.stripes(), 4);
    big.assert_rebuilds(&[3, 4, 5], "T = 16384");
    let mid = File::new(6, 64 * 1024, 25 * 64 * 1024 - 1, SymbolSize::T4096, 20);
    mid.assert_rebuilds(&[24, 0, 1, 2, 12], "T = 4096");
}

#[test]
fn wrong_hash_pieces_are_refused() {
    let n = 50;
    let file = File::new(7, 8 * 1024, n as u64 * 8 * 1024, SymbolSize::T1024, 10);
    let r = file.repairs.len();
    let mut bad_original = file.pieces[3].clone();
    bad_original[100] ^= 1;
    let mut bad_repair = file.repairs[1].clone();
    bad_repair[5000] ^= 0x80;
    let short_repair = file.repairs[2][..100].to_vec();
    let mut originals: Vec<Option<&[u8]>> = file.pieces.iter().map(|p| Some(&p[..])).collect();
    originals[3] = Some(&bad_original);
    originals[10] = None;
    let mut repairs: Vec<Option<&[u8]>> = file.repairs.iter().map(|p| Some(&p[..])).collect();
    repairs[1] = Some(&bad_repair);
    repairs[2] = Some(&short_repair);
    let rebuilt = file
        .code
        .rebuild(&originals, &repairs, &file.hashes, &file.repair_hashes)
        .unwrap();
    assert_eq!(
        rebuilt.refused,
        vec![
            PieceRef::Original(3),
            PieceRef::Repair(1),
            PieceRef::Repair(2)
        ]
    );
    let got: Vec<u32> = rebuilt.pieces.iter().map(|(i, _)| *i).collect();
    assert_eq!(got, vec![3, 10], "the refused original is rebuilt too");
    assert_eq!(rebuilt.pieces[0].1, file.pieces[3]);
    assert_eq!(rebuilt.pieces[1].1, file.pieces[10]);

    // Too many losses once the bad pieces are refused: say so, and which.
    let mut originals: Vec<Option<&[u8]>> = originals.clone();
    for o in originals.iter_mut().take(r) {
        *o = None;
    }
    let err = file
        .code
        .rebuild(&originals, &repairs, &file.hashes, &file.repair_hashes)
        .unwrap_err();
    assert_eq!(
        err,
        OuterError::NotEnoughPieces {
            have: (n - r - 1 + r - 2) as u32,
            need: n as u32,
            refused: vec![PieceRef::Repair(1), PieceRef::Repair(2)],
        }
    );
    assert_eq!(err.action(), Action::RefetchPiece);
}

#[test]
fn windowed_builder_matches_the_whole_file() {
    let file = File::new(8, 16 * 1024, 33 * 16 * 1024 - 5000, SymbolSize::T1024, 10);
    let stripes = file.code.stripes();
    let mut joined = vec![Vec::new(); file.repairs.len()];
    for window in [0..5, 5..6, 6..stripes] {
        let mut b = file.code.builder(window).unwrap();
        for (i, p) in file.pieces.iter().enumerate().rev() {
            b.add_piece(i as u32, p).unwrap();
        }
        for (all, part) in joined.iter_mut().zip(b.finish().unwrap()) {
            all.extend(part);
        }
    }
    assert_eq!(joined, file.repairs);
    // Incomplete input and bad windows are caller errors.
    let mut b = file.code.builder(0..1).unwrap();
    b.add_piece(0, &file.pieces[0]).unwrap();
    assert!(b.add_piece(1, &file.pieces[0][..10]).is_err());
    assert!(b.add_piece(99, &file.pieces[0]).is_err());
    assert_eq!(
        b.finish().unwrap_err(),
        OuterError::MissingPieces { missing: 32 }
    );
    assert!(file.code.builder(0..stripes + 1).is_err());
}

#[test]
fn limits_are_checked() {
    // More pieces than RaptorQ's largest source block: refused, not a panic.
    let huge = PieceGeometry::new(1024, 56_404 * 1024).unwrap();
    let err = OuterCode::new(huge, SymbolSize::T1024, 1).unwrap_err();
    assert_eq!(
        err,
        OuterError::TooManyPieces {
            count: 56_404,
            max: 56_403
        }
    );
    assert_eq!(err.action(), Action::FixCaller);
    let max = PieceGeometry::new(1024, 56_403 * 1024).unwrap();
    assert!(OuterCode::new(max, SymbolSize::T1024, 100).is_ok());
    assert!(OuterCode::new(max, SymbolSize::T1024, (1 << 24) - 56_403).is_ok());
    assert_eq!(
        OuterCode::new(max, SymbolSize::T1024, (1 << 24) - 56_402),
        Err(OuterError::TooManyRepairPieces {
            count: (1 << 24) - 56_402,
            pieces: 56_403
        })
    );
    assert_eq!(OuterCode::repair_count_for(1000, 0), 0);
    assert_eq!(OuterCode::repair_count_for(1000, 10), 102);
    assert_eq!(OuterCode::repair_count_for(7, 10), 3);
    // Wrong input counts are caller errors.
    let file = File::new(9, 4096, 10 * 4096, SymbolSize::T1024, 10);
    let e = file
        .code
        .rebuild(&[None; 3], &[], &file.hashes, &file.repair_hashes);
    assert!(matches!(
        e,
        Err(OuterError::WrongInput {
            what: "original pieces",
            ..
        })
    ));
}
