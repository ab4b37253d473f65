//! The resume file: which pieces are verified and durable, so a restart
//! does not download or re-hash them.
//!
//! Versioned bencode, written atomically. Anything unexpected in it (wrong
//! version, another torrent, sizes that changed on disk, a truncated or
//! garbage file) makes it void, which leads to a re-check of the data, never
//! to overwriting it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wire::{Bitfield, InfoHash, Limits};

use crate::fsutil::write_atomic;

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct ResumeData {
    version: u32,
    #[serde(with = "serde_bytes")]
    info_hash: Vec<u8>,
    pieces: u32,
    #[serde(with = "serde_bytes")]
    have: Vec<u8>,
    /// Size of every file on disk when the data was recorded.
    file_sizes: Vec<u64>,
}

/// Where the resume data of a download saved at `saveas` lives: beside it.
pub fn resume_path(saveas: &Path) -> PathBuf {
    beside(saveas, ".bf-resume")
}

/// `saveas` with `suffix` added to its name: a file of ours beside the
/// download (in the same folder, so it never lands outside it).
pub fn beside(saveas: &Path, suffix: &str) -> PathBuf {
    let mut name = saveas
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    saveas.with_file_name(name)
}

/// Reads resume data; `Err` explains why it cannot be trusted.
pub fn load(
    path: &Path,
    info_hash: InfoHash,
    pieces: u32,
    sizes_on_disk: &[u64],
) -> Result<Bitfield, String> {
    let limit = 4096 + pieces as u64 / 8 + sizes_on_disk.len() as u64 * 24;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > limit {
        return Err(format!(
            "it is {} bytes, more than a resume file of this torrent can be",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    // Our strict decoder first: it bounds depth and sizes before serde sees
    // the bytes.
    wire::bencode::decode(&bytes, &Limits::DEFAULT).map_err(|e| e.to_string())?;
    let data: ResumeData =
        serde_bencode::from_bytes(&bytes).map_err(|e| format!("unreadable: {e}"))?;
    if data.version != VERSION {
        return Err(format!("version {} (expected {VERSION})", data.version));
    }
    if data.info_hash != info_hash.0 {
        return Err("it belongs to another torrent".into());
    }
    if data.pieces != pieces {
        return Err(format!(
            "it records {} pieces, the torrent has {pieces}",
            data.pieces
        ));
    }
    if data.file_sizes != sizes_on_disk {
        return Err("file sizes on disk changed since it was written".into());
    }
    Bitfield::from_wire(&data.have, pieces).map_err(|e| e.to_string())
}

/// Records `have` (pieces whose data is already durable) atomically.
pub fn save(
    path: &Path,
    info_hash: InfoHash,
    have: &Bitfield,
    file_sizes: &[u64],
) -> std::io::Result<()> {
    let data = ResumeData {
        version: VERSION,
        info_hash: info_hash.0.to_vec(),
        pieces: have.len(),
        have: have.to_wire().to_vec(),
        file_sizes: file_sizes.to_vec(),
    };
    let bytes = serde_bencode::to_bytes(&data).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_void_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bf-resume");
        let hash = InfoHash([5; 20]);
        let mut have = Bitfield::new(20);
        have.set(3);
        have.set(19);
        save(&path, hash, &have, &[100, 200]).unwrap();
        assert_eq!(load(&path, hash, 20, &[100, 200]), Ok(have));
        assert!(load(&path, InfoHash([6; 20]), 20, &[100, 200])
            .unwrap_err()
            .contains("another torrent"));
        assert!(load(&path, hash, 21, &[100, 200]).is_err());
        assert!(load(&path, hash, 20, &[100, 199])
            .unwrap_err()
            .contains("sizes"));
        let full = std::fs::read(&path).unwrap();
        for cut in [0, 1, full.len() / 2, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            assert!(
                load(&path, hash, 20, &[100, 200]).is_err(),
                "truncated to {cut}"
            );
        }
        std::fs::write(&path, b"d7:versioni1ee").unwrap();
        assert!(load(&path, hash, 20, &[100, 200]).is_err());
        std::fs::write(&path, vec![b'l'; 5000]).unwrap();
        assert!(load(&path, hash, 20, &[100, 200]).is_err());
        assert!(load(&dir.path().join("missing"), hash, 20, &[]).is_err());
    }

    #[test]
    fn lives_beside_the_download() {
        assert_eq!(
            resume_path(Path::new("/d/file.iso")),
            PathBuf::from("/d/file.iso.bf-resume")
        );
        assert_eq!(
            resume_path(Path::new("album")),
            PathBuf::from("album.bf-resume")
        );
    }
}
