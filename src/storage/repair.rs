//! Repair pieces of the outer code (DESIGN §3.6), kept beside the download
//! in `<saveas>.bf-repair`: repair piece r at offset r · len. Legacy clients
//! never see them; coded peers address repair piece r as piece N + r.
//!
//! No index of which slots are good is kept: at start every slot is hashed
//! against the BLAKE3 in the torrent's `bf` dictionary (the repair pieces
//! are a tenth of the file, so this costs little), and a repair piece is
//! written and synced before anyone is told we hold it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wire::Bitfield;

/// The repair pieces of one torrent on disk.
pub struct RepairStore {
    file: File,
    path: PathBuf,
    len: u32,
    hashes: Vec<[u8; 32]>,
}

impl RepairStore {
    /// Where the repair pieces of a download saved at `saveas` live.
    pub fn path_for(saveas: &Path) -> PathBuf {
        super::resume::beside(saveas, ".bf-repair")
    }

    /// Opens (or creates, empty) the repair file of `saveas` for repair
    /// pieces of `len` bytes with these hashes. A symlink planted at its
    /// name is refused, so nothing is written outside the download folder.
    pub fn open(saveas: &Path, len: u32, hashes: Vec<[u8; 32]>) -> io::Result<Self> {
        let path = Self::path_for(saveas);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(RepairStore {
            file,
            path,
            len,
            hashes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn count(&self) -> u32 {
        self.hashes.len() as u32
    }

    /// Length of every repair piece.
    pub fn piece_len(&self) -> u32 {
        self.len
    }

    pub fn hash(&self, index: u32) -> Option<&[u8; 32]> {
        self.hashes.get(index as usize)
    }

    /// The BLAKE3 of every repair piece, from the torrent.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.len)
    }

    /// The repair pieces already on disk and good. Blocking.
    pub fn check(&self) -> io::Result<Bitfield> {
        let mut have = Bitfield::new(self.count());
        let size = self.file.metadata()?.len();
        let mut buf = vec![0u8; self.len as usize];
        for index in 0..self.count() {
            if self.offset(index) + u64::from(self.len) > size {
                break;
            }
            self.file.read_exact_at(&mut buf, self.offset(index))?;
            if self.verify(index, &buf) {
                have.set(index);
            }
        }
        Ok(have)
    }

    /// Whether `data` is repair piece `index`.
    pub fn verify(&self, index: u32, data: &[u8]) -> bool {
        data.len() == self.len as usize && self.hash(index) == Some(blake3::hash(data).as_bytes())
    }

    /// Reads repair piece `index`. Blocking.
    pub fn read(&self, index: u32) -> io::Result<Vec<u8>> {
        self.check_index(index)?;
        let mut buf = vec![0u8; self.len as usize];
        self.file.read_exact_at(&mut buf, self.offset(index))?;
        Ok(buf)
    }

    /// Writes `data` at `begin` within repair piece `index`, without
    /// syncing (see [`Self::sync`]). Blocking.
    pub fn write_part(&self, index: u32, begin: u32, data: &[u8]) -> io::Result<()> {
        self.check_index(index)?;
        if u64::from(begin) + data.len() as u64 > u64::from(self.len) {
            return Err(invalid(format!(
                "{} bytes at {begin} overrun a {}-byte repair piece",
                data.len(),
                self.len
            )));
        }
        self.file
            .write_all_at(data, self.offset(index) + u64::from(begin))
    }

    /// Writes repair piece `index` and makes it durable: it is announced to
    /// peers right after. Blocking.
    pub fn write(&self, index: u32, data: &[u8]) -> io::Result<()> {
        if data.len() != self.len as usize {
            return Err(invalid(format!(
                "repair piece of {} bytes, {} expected",
                data.len(),
                self.len
            )));
        }
        self.write_part(index, 0, data)?;
        self.sync()
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn check_index(&self, index: u32) -> io::Result<()> {
        if index < self.count() {
            Ok(())
        } else {
            Err(invalid(format!(
                "no repair piece {index} (there are {})",
                self.count()
            )))
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
