//! Storage of one torrent's data: files mapped onto pieces, writes and
//! hashing off the async reactor (callers use `spawn_blocking`), resume data
//! recorded only for durable pieces, and a re-check when it is missing or
//! wrong.

mod check;
mod fileset;
pub mod repair;
pub mod resume;

pub use check::{hash_content, hash_pieces};
pub use fileset::FileSet;
pub use repair::RepairStore;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use wire::{Bitfield, Info, InfoHash, PieceGeometry};

/// How existing data was found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartState {
    /// Resume data was valid; `rechecked` pieces outside it were hashed.
    Resumed { rechecked: u32 },
    /// No usable resume data (`reason`); the data on disk was re-checked.
    Rechecked { reason: String },
}

/// The files of one torrent on disk.
pub struct Storage {
    files: FileSet,
    geometry: PieceGeometry,
    piece_hashes: Vec<[u8; 20]>,
    info_hash: InfoHash,
    lengths: Vec<u64>,
    resume_path: PathBuf,
    /// File sizes on disk before we extended anything, for the resume check.
    sizes_before_open: Vec<u64>,
    /// The outer code and its repair pieces, when the torrent has a `bf`
    /// dictionary: piece indexes N .. N + R − 1 are the repair pieces.
    outer: Option<(codec::OuterCode, RepairStore)>,
}

impl Storage {
    /// Opens or creates the files of `info` at `saveas`: the file itself for
    /// a single-file torrent, a folder for a multi-file one.
    pub fn open(info: &Info, saveas: &Path) -> io::Result<Self> {
        let lengths: Vec<u64> = info.files.iter().map(|f| f.length).collect();
        let files = if info.single_file {
            FileSet::open_single(saveas, info.total_length())?
        } else {
            let rel: Vec<_> = info
                .files
                .iter()
                .map(|f| (f.path.clone(), f.length))
                .collect();
            FileSet::open_beneath(saveas, &rel)?
        };
        let sizes_before_open = files.disk_sizes()?;
        files.extend_to(&lengths)?;
        let outer = match &info.outer {
            Some(bf) => open_outer(info, bf, saveas)?,
            None => None,
        };
        Ok(Storage {
            outer,
            files,
            geometry: info.geometry,
            piece_hashes: info.pieces.clone(),
            info_hash: info.info_hash,
            lengths,
            resume_path: resume::resume_path(saveas),
            sizes_before_open,
        })
    }

    pub fn geometry(&self) -> PieceGeometry {
        self.geometry
    }

    /// The torrent's outer code, when it has one.
    pub fn outer(&self) -> Option<&codec::OuterCode> {
        self.outer.as_ref().map(|(code, _)| code)
    }

    /// Where its repair pieces are kept, when it has an outer code.
    pub fn repair(&self) -> Option<&RepairStore> {
        self.outer.as_ref().map(|(_, store)| store)
    }

    /// The repair store and index of piece `index` when it is a repair piece.
    fn as_repair(&self, index: u32) -> Option<(&RepairStore, u32)> {
        let r = index.checked_sub(self.geometry.piece_count())?;
        self.repair().map(|store| (store, r))
    }

    /// What piece `index` (original, or repair from N on) must hash to.
    pub fn piece_hash(&self, index: u32) -> Option<codec::PieceHash> {
        match self.as_repair(index) {
            Some((store, r)) => store.hash(r).map(|h| codec::PieceHash::Blake3(*h)),
            None => self
                .piece_hashes
                .get(index as usize)
                .map(|h| codec::PieceHash::Sha1(*h)),
        }
    }

    pub fn resume_path(&self) -> &Path {
        &self.resume_path
    }

    /// Finds the verified pieces already on disk: trusts valid resume data
    /// and hashes only pieces outside it that hold data; without usable
    /// resume data, hashes every piece that holds data. Blocking.
    pub fn check_existing(
        &self,
        on_progress: impl FnMut(u64),
    ) -> io::Result<(Bitfield, StartState)> {
        let count = self.geometry.piece_count();
        let (mut have, reason) = match resume::load(
            &self.resume_path,
            self.info_hash,
            count,
            &self.sizes_before_open,
        ) {
            Ok(have) => (have, None),
            Err(why) => (Bitfield::new(count), Some(why)),
        };
        // Pieces lying wholly in holes read as zeros: no need to read them,
        // but a piece of zeros (a sparse disk image's) is still good data,
        // so compare its hash with the hash of zeros instead.
        let mut zero_hashes: HashMap<u32, [u8; 20]> = HashMap::new();
        let mut candidates = Vec::new();
        for i in 0..count {
            if have.has(i) {
                continue;
            }
            let len = self.geometry.piece_size(i).unwrap_or(0);
            if self
                .files
                .may_have_data(self.geometry.piece_offset(i), u64::from(len))
            {
                candidates.push(i);
                continue;
            }
            let zeros = zero_hashes
                .entry(len)
                .or_insert_with(|| Sha1::digest(vec![0u8; len as usize]).into());
            if self.piece_hashes.get(i as usize) == Some(zeros) {
                have.set(i);
            }
        }
        let hashes = hash_pieces(&self.files, self.geometry, &candidates, on_progress)?;
        for (&index, hash) in candidates.iter().zip(&hashes) {
            if self.piece_hashes.get(index as usize) == Some(hash) {
                have.set(index);
            }
        }
        let state = match reason {
            None => StartState::Resumed {
                rechecked: candidates.len() as u32,
            },
            Some(reason) => StartState::Rechecked { reason },
        };
        Ok((have, state))
    }

    /// Reads `buf.len()` bytes of piece `index` starting at `begin`. Blocking.
    pub fn read(&self, index: u32, begin: u32, buf: &mut [u8]) -> io::Result<()> {
        self.files
            .read_exact_at(self.geometry.piece_offset(index) + u64::from(begin), buf)
    }

    /// Reads bytes at an offset of the whole torrent (across files), for
    /// the mounted file system. Blocking.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.files.read_exact_at(offset, buf)
    }

    /// Reads a whole piece (or repair piece). Blocking.
    pub fn read_piece(&self, index: u32) -> io::Result<Vec<u8>> {
        if let Some((store, r)) = self.as_repair(index) {
            return store.read(r);
        }
        let len = self
            .geometry
            .piece_size(index)
            .ok_or_else(|| bad_index(index))?;
        let mut buf = vec![0u8; len as usize];
        self.read(index, 0, &mut buf)?;
        Ok(buf)
    }

    /// Whether `data` is piece `index` (SHA-1 against the torrent). CPU-bound.
    pub fn verify(&self, index: u32, data: &[u8]) -> bool {
        if let Some((store, r)) = self.as_repair(index) {
            return store.verify(r, data);
        }
        self.piece_hashes.get(index as usize) == Some(&<[u8; 20]>::from(Sha1::digest(data)))
    }

    /// Writes a verified piece. Blocking. Not durable until
    /// [`Self::sync_and_record`] — except a repair piece, which is synced at
    /// once (its holders are told right after, and no resume data covers it).
    pub fn write_piece(&self, index: u32, data: &[u8]) -> io::Result<()> {
        if let Some((store, r)) = self.as_repair(index) {
            return store.write(r, data);
        }
        if self.geometry.piece_size(index) != Some(data.len() as u32) {
            return Err(bad_index(index));
        }
        self.files
            .write_all_at(self.geometry.piece_offset(index), data)
    }

    /// Makes every write so far durable, then records `have` as the resume
    /// data. `have` must hold only pieces whose writes finished before this
    /// call: after the sync they are on disk, so recording them is safe.
    pub fn sync_and_record(&self, have: &Bitfield) -> io::Result<()> {
        self.files.sync()?;
        let sizes = self.files.disk_sizes()?;
        resume::save(&self.resume_path, self.info_hash, have, &sizes)
    }

    /// Torrent lengths of the files, in order.
    pub fn file_lengths(&self) -> &[u64] {
        &self.lengths
    }
}

/// The outer code of `info` and its repair file; `None` (with a warning)
/// when the code cannot work for this torrent.
fn open_outer(
    info: &Info,
    bf: &wire::OuterInfo,
    saveas: &Path,
) -> io::Result<Option<(codec::OuterCode, RepairStore)>> {
    let code = codec::SymbolSize::from_bytes(bf.symbol_size)
        .ok_or_else(|| format!("symbol size {}", bf.symbol_size))
        .and_then(|t| {
            codec::OuterCode::new(info.geometry, t, bf.repair_hashes.len() as u32)
                .map_err(|e| e.to_string())
        });
    let code = match code {
        Ok(code) if code.repair_count() > 0 => code,
        Ok(_) => return Ok(None),
        Err(e) => {
            tracing::warn!(
                "the torrent's outer code is unusable ({e}); ignoring its repair pieces"
            );
            return Ok(None);
        }
    };
    let len = u32::try_from(code.repair_piece_len()).map_err(io::Error::other)?;
    let store = RepairStore::open(saveas, len, bf.repair_hashes.clone())?;
    Ok(Some((code, store)))
}

fn bad_index(index: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no piece {index} of that size"),
    )
}

#[cfg(test)]
mod tests;
