//! Hashing the pieces of files on disk, on every core.
//!
//! Each worker takes the next batch of pieces, reads them with positioned
//! reads (no shared cursor, no locking) and hashes them; the calling thread
//! only reports progress. Pieces that span files are read across them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha1::{Digest, Sha1};
use wire::FileSpans;

/// Reads ranges of the concatenation of several files.
pub struct ContentReader {
    files: Vec<(PathBuf, File)>,
    spans: FileSpans,
}

impl ContentReader {
    /// Opens every file; `lengths` are the lengths recorded when they were
    /// listed, so a file that shrinks meanwhile is noticed.
    pub fn open(files: &[(PathBuf, u64)]) -> Result<Self> {
        let spans = FileSpans::new(files.iter().map(|(_, len)| *len))
            .ok_or_else(|| anyhow!("total size overflows"))?;
        let files = files
            .iter()
            .map(|(path, _)| {
                File::open(path)
                    .map(|f| (path.clone(), f))
                    .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect::<Result<_>>()?;
        Ok(ContentReader { files, spans })
    }

    pub fn total_length(&self) -> u64 {
        self.spans.total_length()
    }

    /// Fills `buf` with the content starting at `offset`.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut filled = 0usize;
        for slice in self.spans.slices(offset, buf.len() as u64) {
            let (path, file) = self
                .files
                .get(slice.file)
                .ok_or_else(|| anyhow!("file index {} out of range", slice.file))?;
            let len = slice.length as usize;
            let dst = buf
                .get_mut(filled..filled + len)
                .ok_or_else(|| anyhow!("read past the buffer"))?;
            file.read_exact_at(dst, slice.offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    anyhow!("{} got shorter while it was being hashed", path.display())
                } else {
                    anyhow!("cannot read {}: {e}", path.display())
                }
            })?;
            filled += len;
        }
        if filled != buf.len() {
            bail!("content ends before offset {}", offset + buf.len() as u64);
        }
        Ok(())
    }
}

/// SHA-1 of every piece. `on_progress` is called from the calling thread
/// with the bytes hashed so far, about ten times a second.
pub fn hash_pieces(
    reader: &ContentReader,
    piece_length: u32,
    mut on_progress: impl FnMut(u64),
) -> Result<Vec<[u8; 20]>> {
    let total = reader.total_length();
    let piece_count =
        u32::try_from(total.div_ceil(u64::from(piece_length))).context("too many pieces")?;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(piece_count as usize)
        .max(1);
    // Batches of about 8 MiB keep the shared counter cold and each worker's
    // reads sequential.
    let batch = (8u32 << 20).div_ceil(piece_length).max(1);
    let next = AtomicU32::new(0);
    let done_bytes = AtomicU64::new(0);
    let hashes = Mutex::new(vec![[0u8; 20]; piece_count as usize]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);

    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(scope.spawn(|| {
                let mut buf = vec![0u8; piece_length as usize];
                let mut local = Vec::new();
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= piece_count {
                        break;
                    }
                    for index in first..(first.saturating_add(batch)).min(piece_count) {
                        let offset = u64::from(index) * u64::from(piece_length);
                        let len = (total - offset).min(u64::from(piece_length)) as usize;
                        let piece = &mut buf[..len];
                        if let Err(e) = reader.read_exact_at(offset, piece) {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            next.store(piece_count, Ordering::Relaxed);
                            return;
                        }
                        local.push((index, <[u8; 20]>::from(Sha1::digest(&*piece))));
                        done_bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    let mut all = hashes.lock().unwrap_or_else(|p| p.into_inner());
                    for (index, hash) in local.drain(..) {
                        if let Some(slot) = all.get_mut(index as usize) {
                            *slot = hash;
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
pub fn hash_content(reader: &ContentReader) -> Result<[u8; 20]> {
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let total = reader.total_length();
    let mut offset = 0u64;
    while offset < total {
        let len = (total - offset).min(buf.len() as u64) as usize;
        reader.read_exact_at(offset, &mut buf[..len])?;
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
        let reader = ContentReader::open(&files).unwrap();
        let hashes = hash_pieces(&reader, 16384, |_| {}).unwrap();
        let expected: Vec<[u8; 20]> = all.chunks(16384).map(|c| Sha1::digest(c).into()).collect();
        assert_eq!(hashes, expected);
        assert_eq!(
            hash_content(&reader).unwrap(),
            <[u8; 20]>::from(Sha1::digest(&all))
        );
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let reader = ContentReader::open(&[(path, 5000)]).unwrap();
        let err = hash_pieces(&reader, 1024, |_| {}).unwrap_err().to_string();
        assert!(err.contains("got shorter"), "{err}");
    }
}
