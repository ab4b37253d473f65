use std::path::Path;

use sha1::{Digest, Sha1};
use wire::bencode::OwnedValue;
use wire::{Bitfield, Info, Limits, Metainfo};

use super::*;

/// A multi-file torrent over `data` split into `sizes`.
fn torrent(data: &[u8], sizes: &[usize], piece: u32) -> Info {
    let pieces: Vec<u8> = data
        .chunks(piece as usize)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let files = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| {
            OwnedValue::dict([
                ("length", OwnedValue::Int(*len as i64)),
                (
                    "path",
                    OwnedValue::List(vec![
                        OwnedValue::bytes(format!("d{}", i % 2)),
                        OwnedValue::bytes(format!("f{i}")),
                    ]),
                ),
            ])
        })
        .collect();
    let info = OwnedValue::dict([
        ("files", OwnedValue::List(files)),
        ("name", OwnedValue::bytes("t")),
        ("piece length", OwnedValue::Int(i64::from(piece))),
        ("pieces", OwnedValue::Bytes(pieces)),
    ]);
    let doc = Metainfo::encode_with_info(&info.to_bytes(), None, &[], None, None, None);
    Metainfo::from_bytes(&doc, &Limits::DEFAULT).unwrap().info
}

fn sample() -> (Vec<u8>, Info) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let info = torrent(&data, &[50_000, 0, 100_000, 50_000], 16384);
    (data, info)
}

fn piece_of(data: &[u8], info: &Info, i: u32) -> Vec<u8> {
    let off = info.geometry.piece_offset(i) as usize;
    data[off..off + info.geometry.piece_size(i).unwrap() as usize].to_vec()
}

#[test]
fn writes_read_back_and_resume_after_sync() {
    let (data, info) = sample();
    let dir = tempfile::tempdir().unwrap();
    let saveas = dir.path().join("t");
    let storage = Storage::open(&info, &saveas).unwrap();
    let (have, state) = storage.check_existing(|_| {}).unwrap();
    assert_eq!(have.count(), 0);
    assert!(matches!(state, StartState::Rechecked { .. }));
    let mut written = Bitfield::new(info.piece_count());
    for i in [0, 3, 12] {
        let p = piece_of(&data, &info, i);
        assert!(storage.verify(i, &p));
        storage.write_piece(i, &p).unwrap();
        written.set(i);
    }
    assert_eq!(storage.read_piece(3).unwrap(), piece_of(&data, &info, 3));
    storage.sync_and_record(&written).unwrap();
    // A piece written after the last record is found by the quick re-check.
    storage.write_piece(7, &piece_of(&data, &info, 7)).unwrap();
    drop(storage);
    let storage = Storage::open(&info, &saveas).unwrap();
    let (have, state) = storage.check_existing(|_| {}).unwrap();
    assert_eq!(have.iter_set().collect::<Vec<_>>(), vec![0, 3, 7, 12]);
    // Only pieces holding data outside the resume record were hashed (file
    // systems allocate in extents, so a neighbour of piece 7 may count too);
    // most of the 9 pieces never written were skipped.
    assert!(
        matches!(state, StartState::Resumed { rechecked } if rechecked <= 6),
        "{state:?}"
    );
    assert_eq!(std::fs::read(saveas.join("d0/f0")).unwrap().len(), 50_000);
}

#[test]
fn void_resume_data_leads_to_a_recheck_that_keeps_good_data() {
    let (data, info) = sample();
    let dir = tempfile::tempdir().unwrap();
    let saveas = dir.path().join("t");
    let storage = Storage::open(&info, &saveas).unwrap();
    for i in 0..info.piece_count() {
        storage.write_piece(i, &piece_of(&data, &info, i)).unwrap();
    }
    storage
        .sync_and_record(&Bitfield::full(info.piece_count()))
        .unwrap();
    let resume = storage.resume_path().to_path_buf();
    drop(storage);
    for garbage in [
        Vec::new(),
        b"d7:versioni1e".to_vec(),
        b"not bencode at all".to_vec(),
    ] {
        std::fs::write(&resume, &garbage).unwrap();
        let storage = Storage::open(&info, &saveas).unwrap();
        let (have, state) = storage.check_existing(|_| {}).unwrap();
        assert!(have.is_complete(), "good data lost after {garbage:?}");
        assert!(matches!(state, StartState::Rechecked { .. }));
    }
    // A corrupted byte on disk makes exactly that piece missing.
    let f2 = saveas.join("d0/f2");
    let mut bytes = std::fs::read(&f2).unwrap();
    bytes[20_000] ^= 1;
    std::fs::write(&f2, bytes).unwrap();
    std::fs::remove_file(&resume).unwrap();
    let storage = Storage::open(&info, &saveas).unwrap();
    let (have, _) = storage.check_existing(|_| {}).unwrap();
    let bad = ((50_000 + 20_000) / 16384) as u32;
    assert_eq!(have.count(), info.piece_count() - 1);
    assert!(!have.has(bad));
}

#[test]
fn a_symlink_inside_the_download_folder_is_never_followed() {
    let (_, info) = sample();
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let saveas = dir.path().join("t");
    std::fs::create_dir(&saveas).unwrap();
    std::os::unix::fs::symlink(&outside, saveas.join("d0")).unwrap();
    let err = Storage::open(&info, &saveas)
        .err()
        .expect("open must refuse")
        .to_string();
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was created outside"
    );
    // A symlinked file is refused too.
    std::fs::remove_file(saveas.join("d0")).unwrap();
    std::fs::create_dir(saveas.join("d0")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), saveas.join("d0/f0")).unwrap();
    assert!(Storage::open(&info, &saveas).is_err());
    assert!(!Path::new(&outside.join("victim")).exists());
}

/// Pieces of zeros lying in holes of sparse files are good data (a disk
/// image's empty stretches): they count as present without being read,
/// and pieces with data in holes still do not.
#[test]
fn zero_pieces_in_holes_are_present() {
    let piece = 65_536u32;
    let mut data = vec![0u8; 8 * piece as usize];
    data[3 * piece as usize + 5] = 1; // piece 3 holds data
    let info = torrent(&data, &[data.len()], piece);
    let dir = tempfile::tempdir().unwrap();
    let saveas = dir.path().join("t");
    // A fresh download: sparse files of zeros everywhere.
    let storage = Storage::open(&info, &saveas).unwrap();
    let (have, _) = storage.check_existing(|_| {}).unwrap();
    let got: Vec<u32> = have.iter_set().collect();
    assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 7]);
}
