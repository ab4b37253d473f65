//! Collecting the files of a torrent from a path on disk, as `btmakemetafile`
//! does: a single file, or every file under a folder in sorted order,
//! skipping `CVS`, `core`, `Thumbs.db`, `desktop.ini` and dot-names.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Names the seeds' tools never publish.
const IGNORED: &[&str] = &["CVS", "core", "Thumbs.db", "desktop.ini"];

/// One file to publish: where it is on disk and its path inside the torrent.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub disk_path: PathBuf,
    /// Path components below the published folder (empty for a single file).
    pub components: Vec<String>,
    pub length: u64,
}

/// Whether a directory entry is published.
pub fn is_published(name: &str) -> bool {
    !name.starts_with('.') && !IGNORED.contains(&name)
}

/// The files of `root` in torrent order. A folder yields its files sorted by
/// path; symlinks are followed, but a folder reached twice (a link loop) is
/// refused.
pub fn collect(root: &Path) -> Result<Vec<SourceFile>> {
    let meta = fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    if meta.is_file() {
        return Ok(vec![SourceFile {
            disk_path: root.to_path_buf(),
            components: Vec::new(),
            length: meta.len(),
        }]);
    }
    if !meta.is_dir() {
        bail!("{} is neither a file nor a folder", root.display());
    }
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    walk(root, &mut Vec::new(), &mut visited, &mut out)?;
    if out.is_empty() {
        bail!("{} holds no files to publish", root.display());
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    visited: &mut HashSet<(u64, u64)>,
    out: &mut Vec<SourceFile>,
) -> Result<()> {
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !visited.insert((meta.dev(), meta.ino())) {
        bail!("{} is reached twice (a symlink loop?)", dir.display());
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!(
                "{} has a name that is not valid UTF-8; rename it to publish",
                entry.path().display()
            );
        };
        if is_published(name) {
            entries.push(name.to_owned());
        }
    }
    entries.sort();
    for name in entries {
        let path = dir.join(&name);
        let meta =
            fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
        prefix.push(name);
        if meta.is_dir() {
            walk(&path, prefix, visited, out)?;
        } else if meta.is_file() {
            out.push(SourceFile {
                disk_path: path,
                components: prefix.clone(),
                length: meta.len(),
            });
        }
        prefix.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_ignored_names_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in [
            "b/z.txt",
            "b/a.txt",
            "a.txt",
            ".hidden/x",
            "CVS/x",
            "core",
            "Thumbs.db",
            "desktop.ini",
            ".dot",
        ] {
            let path = root.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, p).unwrap();
        }
        let files = collect(root).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.components.join("/")).collect();
        assert_eq!(names, ["a.txt", "b/a.txt", "b/z.txt"]);
        assert_eq!(files[0].length, 5);
    }
}
