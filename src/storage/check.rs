//! Hashing pieces on every core: for `make` (every piece) and for the
//! re-check of existing data (a chosen set of pieces against their hashes).
//!
//! Each worker takes the next batch of pieces, reads them with positioned
//! reads (no shared cursor, no locking) and hashes them; the calling thread
//! only reports progress.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha1::{Digest, Sha1};
use wire::PieceGeometry;

use super::FileSet;

/// SHA-1 of each listed piece, in the order given. `on_progress` is called
/// from the calling thread with the bytes hashed so far, about ten times a
/// second.
pub fn hash_pieces(
    files: &FileSet,
    geometry: PieceGeometry,
    pieces: &[u32],
    mut on_progress: impl FnMut(u64),
) -> io::Result<Vec<[u8; 20]>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(pieces.len())
        .max(1);
    // Batches of about 8 MiB keep the shared counter cold and each worker's
    // reads sequential.
    let batch = (8usize << 20)
        .div_ceil(geometry.piece_length() as usize)
        .max(1);
    let next = AtomicUsize::new(0);
    let done_bytes = AtomicU64::new(0);
    let hashes = Mutex::new(vec![[0u8; 20]; pieces.len()]);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);

    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(scope.spawn(|| {
                let mut buf = vec![0u8; geometry.piece_length() as usize];
                let mut local = Vec::new();
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= pieces.len() {
                        break;
                    }
                    let end = (first + batch).min(pieces.len());
                    for (slot, &index) in pieces[first..end].iter().enumerate() {
                        let len = geometry.piece_size(index).unwrap_or(0) as usize;
                        let piece = &mut buf[..len];
                        if let Err(e) = files.read_exact_at(geometry.piece_offset(index), piece) {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            next.store(pieces.len(), Ordering::Relaxed);
                            return;
                        }
                        local.push((first + slot, <[u8; 20]>::from(Sha1::digest(&*piece))));
                        done_bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    let mut all = hashes.lock().unwrap_or_else(|p| p.into_inner());
                    for (slot, hash) in local.drain(..) {
                        if let Some(entry) = all.get_mut(slot) {
                            *entry = hash;
                        }
                    }
                }
            }));
        }
        while !handles.iter().all(|h| h.is_finished()) {
            on_progress(done_bytes.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        on_progress(done_bytes.load(Ordering::Relaxed));
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(hashes.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// SHA-1 of the whole content, read sequentially (the Kenosis key).
pub fn hash_content(files: &FileSet) -> io::Result<[u8; 20]> {
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let total = files.total_length();
    let mut offset = 0u64;
    while offset < total {
        let len = (total - offset).min(buf.len() as u64) as usize;
        files.read_exact_at(offset, &mut buf[..len])?;
        hasher.update(&buf[..len]);
        offset += len as u64;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_span_files_and_match_a_sequential_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        let mut all = Vec::new();
        for (i, len) in [70_000usize, 0, 1, 100_000].iter().enumerate() {
            let data: Vec<u8> = (0..*len).map(|j| (j * 7 + i) as u8).collect();
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &data).unwrap();
            all.extend_from_slice(&data);
            files.push((path, *len as u64));
        }
        let set = FileSet::open_read(&files).unwrap();
        let geometry = PieceGeometry::new(16384, all.len() as u64).unwrap();
        let indexes: Vec<u32> = (0..geometry.piece_count()).collect();
        let hashes = hash_pieces(&set, geometry, &indexes, |_| {}).unwrap();
        let expected: Vec<[u8; 20]> = all.chunks(16384).map(|c| Sha1::digest(c).into()).collect();
        assert_eq!(hashes, expected);
        // A subset, out of order.
        let some = hash_pieces(&set, geometry, &[9, 2], |_| {}).unwrap();
        assert_eq!(some, vec![expected[9], expected[2]]);
        assert_eq!(
            hash_content(&set).unwrap(),
            <[u8; 20]>::from(Sha1::digest(&all))
        );
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let set = FileSet::open_read(&[(path, 5000)]).unwrap();
        let geometry = PieceGeometry::new(1024, 5000).unwrap();
        let err = hash_pieces(&set, geometry, &[0, 1, 2, 3, 4], |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than the torrent says"), "{err}");
    }
}
