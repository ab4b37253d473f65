//! The allow-list: info-hashes from a file of hex lines (`--allow`) and/or
//! from the .torrent files in a folder (`--allowed_dir`, as in the seeds'
//! trackers, which also gives the index page its names).
//!
//! Both are re-read periodically, so publishing a torrent is "drop it in the
//! folder". A bad list file at start is an error (the operator asked for a
//! list and would otherwise run an open tracker); on a later re-read the
//! previous list stays in force and a warning is logged. Unreadable torrents
//! in the folder are skipped with a warning.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use wire::InfoHash;

/// Folder depth scanned below `--allowed_dir`.
const MAX_DEPTH: usize = 8;

/// One version of the allowed set.
#[derive(Debug, Default)]
pub(crate) struct AllowSet {
    pub hashes: HashSet<InfoHash>,
    /// Names from the folder's torrents.
    pub names: HashMap<InfoHash, String>,
}

/// (modification time, length) → what the torrent held, so unchanged files
/// are not parsed again on every re-read.
type DirCache = HashMap<PathBuf, (SystemTime, u64, Option<(InfoHash, String)>)>;

pub(crate) struct Allow {
    /// Whether announces are checked at all (fixed at start, so an open
    /// tracker pays nothing for this).
    enforce: bool,
    list_file: Option<PathBuf>,
    dir: Option<PathBuf>,
    dir_enforces: bool,
    max: usize,
    current: RwLock<Arc<AllowSet>>,
    list_hashes: Mutex<HashSet<InfoHash>>,
    cache: Mutex<DirCache>,
}

impl Allow {
    /// Reads the list file and the folder for the first time.
    pub fn load(
        list_file: Option<PathBuf>,
        dir: Option<PathBuf>,
        dir_enforces: bool,
        max: usize,
    ) -> Result<Self> {
        let enforce = list_file.is_some() || (dir.is_some() && dir_enforces);
        let allow = Allow {
            enforce,
            list_file,
            dir,
            dir_enforces,
            max,
            current: RwLock::default(),
            list_hashes: Mutex::default(),
            cache: Mutex::default(),
        };
        if let Some(path) = &allow.list_file {
            *allow.list_hashes.lock().unwrap_or_else(|e| e.into_inner()) = read_list(path, max)?;
        }
        if let Some(dir) = &allow.dir {
            if !dir.is_dir() {
                bail!("--allowed_dir {} is not a folder", dir.display());
            }
        }
        allow.rebuild(true);
        Ok(allow)
    }

    pub fn enforced(&self) -> bool {
        self.enforce
    }

    pub fn permits(&self, hash: &InfoHash) -> bool {
        !self.enforce || self.snapshot().hashes.contains(hash)
    }

    pub fn snapshot(&self) -> Arc<AllowSet> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the list file and the folder (blocking I/O: call it from a
    /// blocking thread).
    pub fn rescan(&self) {
        if let Some(path) = &self.list_file {
            match read_list(path, self.max) {
                Ok(set) => *self.list_hashes.lock().unwrap_or_else(|e| e.into_inner()) = set,
                Err(e) => tracing::warn!("keeping the previous allow-list: {e:#}"),
            }
        }
        self.rebuild(false);
    }

    fn rebuild(&self, first: bool) {
        let mut set = AllowSet {
            hashes: self
                .list_hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            names: HashMap::new(),
        };
        if let Some(dir) = &self.dir {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut files = Vec::new();
            collect_torrents(dir, 0, self.max, &mut files);
            let mut fresh = DirCache::with_capacity(files.len());
            for (path, mtime, len) in files {
                let entry = match cache.remove(&path) {
                    Some(hit) if hit.0 == mtime && hit.1 == len => hit,
                    _ => (mtime, len, read_torrent(&path, first)),
                };
                if let Some((hash, name)) = &entry.2 {
                    set.names.insert(*hash, name.clone());
                    if self.dir_enforces && set.hashes.len() < self.max {
                        set.hashes.insert(*hash);
                    }
                }
                fresh.insert(path, entry);
            }
            *cache = fresh;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

fn read_torrent(path: &Path, loud: bool) -> Option<(InfoHash, String)> {
    match crate::show::load_torrent(path) {
        Ok(meta) => Some((meta.info.info_hash, meta.info.name)),
        Err(e) => {
            if loud {
                tracing::warn!("skipping {}: {e:#}", path.display());
            } else {
                tracing::debug!("skipping {}: {e:#}", path.display());
            }
            None
        }
    }
}

/// `.torrent` files below `dir`, with their modification time and length.
fn collect_torrents(
    dir: &Path,
    depth: usize,
    max: usize,
    out: &mut Vec<(PathBuf, SystemTime, u64)>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!("cannot read {}", dir.display());
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= max {
            return;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect_torrents(&path, depth + 1, max, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("torrent"))
        {
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((path, mtime, meta.len()));
        }
    }
}

/// Reads a file of info-hashes: 40 hex digits per line (opentracker's
/// whitelist format); blank lines and `#` comments are skipped.
pub(crate) fn read_list(path: &Path, max: usize) -> Result<HashSet<InfoHash>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the allow-list {}", path.display()))?;
    let mut set = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some(hash) = InfoHash::from_hex(line) else {
            bail!(
                "{}:{}: {line:?} is not a 40-digit hex info-hash",
                path.display(),
                n + 1
            );
        };
        if set.len() >= max {
            bail!("{} lists more than {max} info-hashes", path.display());
        }
        set.insert(hash);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_file_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("allow.txt");
        let h = "0123456789abcdef0123456789ABCDEF01234567";
        std::fs::write(&list, format!("# comment\n\n{h}\n")).unwrap();
        let allow = Allow::load(Some(list.clone()), None, true, 10).unwrap();
        assert!(allow.enforced());
        assert!(allow.permits(&InfoHash::from_hex(h).unwrap()));
        assert!(!allow.permits(&InfoHash([0; 20])));

        std::fs::write(&list, "nothex\n").unwrap();
        let err = Allow::load(Some(list.clone()), None, true, 10)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains(":1:"), "{err:#}");
        // A re-read of a broken file keeps the old list.
        allow.rescan();
        assert!(allow.permits(&InfoHash::from_hex(h).unwrap()));

        let open = Allow::load(None, None, true, 10).unwrap();
        assert!(!open.enforced() && open.permits(&InfoHash([7; 20])));
    }
}
