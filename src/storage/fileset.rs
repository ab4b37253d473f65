//! A torrent's files seen as one byte space: positioned reads and writes
//! that cross file boundaries, and safe opening beneath a download folder.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags};
use wire::{FileSpans, SafeRelPath};

/// Open files of a torrent, addressed by offsets in the torrent's byte space.
pub struct FileSet {
    files: Vec<OpenFile>,
    spans: FileSpans,
}

struct OpenFile {
    path: PathBuf,
    file: File,
    /// Written since the last sync.
    dirty: AtomicBool,
}

impl FileSet {
    /// Opens existing files for reading (as `make` does); `lengths` are the
    /// sizes seen when they were listed, so a file that shrinks is noticed.
    pub fn open_read(files: &[(PathBuf, u64)]) -> io::Result<Self> {
        let spans = FileSpans::new(files.iter().map(|(_, len)| *len))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "total size overflows"))?;
        let files = files
            .iter()
            .map(|(path, _)| {
                File::open(path)
                    .map(|file| OpenFile::new(path.clone(), file))
                    .map_err(|e| annotate(e, path))
            })
            .collect::<io::Result<_>>()?;
        Ok(FileSet { files, spans })
    }

    /// Opens (creating when missing) a single file the user named.
    pub fn open_single(path: &Path, length: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| annotate(e, path))?;
        let spans = FileSpans::new([length])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "total size overflows"))?;
        Ok(FileSet {
            files: vec![OpenFile::new(path.to_path_buf(), file)],
            spans,
        })
    }

    /// Opens (creating when missing) every file of a multi-file torrent
    /// beneath `root`. Each folder is entered with `O_NOFOLLOW`, so a symlink
    /// planted inside the download folder cannot lead a write outside it.
    pub fn open_beneath(root: &Path, files: &[(SafeRelPath, u64)]) -> io::Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| annotate(e, root))?;
        let root_fd: OwnedFd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| annotate(e.into(), root))?;
        let spans = FileSpans::new(files.iter().map(|(_, len)| *len))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "total size overflows"))?;
        let mut open = Vec::with_capacity(files.len());
        for (rel, _) in files {
            let path = rel.under(root);
            let file = open_beneath_fd(&root_fd, rel).map_err(|e| annotate(e, &path))?;
            open.push(OpenFile::new(path, file));
        }
        Ok(FileSet { files: open, spans })
    }

    pub fn total_length(&self) -> u64 {
        self.spans.total_length()
    }

    /// Paths and current on-disk sizes of the files.
    pub fn disk_sizes(&self) -> io::Result<Vec<u64>> {
        self.files
            .iter()
            .map(|f| {
                f.file
                    .metadata()
                    .map(|m| m.len())
                    .map_err(|e| annotate(e, &f.path))
            })
            .collect()
    }

    /// Extends every file shorter than its torrent length to that length
    /// (sparse). Longer files are left alone: their tail may be someone's
    /// data, and we never read past the torrent's length anyway.
    pub fn extend_to(&self, lengths: &[u64]) -> io::Result<()> {
        for (f, &len) in self.files.iter().zip(lengths) {
            let size = f.file.metadata().map_err(|e| annotate(e, &f.path))?.len();
            if size < len {
                f.file.set_len(len).map_err(|e| annotate(e, &f.path))?;
            }
        }
        Ok(())
    }

    /// Fills `buf` with the content starting at `offset`.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0usize;
        for slice in self.spans.slices(offset, buf.len() as u64) {
            let f = self.file(slice.file)?;
            let len = slice.length as usize;
            let dst = buf.get_mut(filled..filled + len).ok_or_else(out_of_range)?;
            f.file.read_exact_at(dst, slice.offset).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than the torrent says", f.path.display()),
                    )
                } else {
                    annotate(e, &f.path)
                }
            })?;
            filled += len;
        }
        if filled != buf.len() {
            return Err(out_of_range());
        }
        Ok(())
    }

    /// Writes `data` at `offset` of the byte space.
    pub fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        for slice in self.spans.slices(offset, data.len() as u64) {
            let f = self.file(slice.file)?;
            let len = slice.length as usize;
            let src = data.get(done..done + len).ok_or_else(out_of_range)?;
            f.dirty.store(true, Ordering::Release);
            f.file
                .write_all_at(src, slice.offset)
                .map_err(|e| annotate(e, &f.path))?;
            done += len;
        }
        if done != data.len() {
            return Err(out_of_range());
        }
        Ok(())
    }

    /// Makes every write so far durable (fdatasync of the files written).
    pub fn sync(&self) -> io::Result<()> {
        for f in &self.files {
            if f.dirty.swap(false, Ordering::AcqRel) {
                if let Err(e) = f.file.sync_data() {
                    f.dirty.store(true, Ordering::Release);
                    return Err(annotate(e, &f.path));
                }
            }
        }
        Ok(())
    }

    /// Whether any byte of `[offset, offset + len)` may hold data: false
    /// only when the range lies entirely in holes of sparse files, which
    /// lets a re-check skip pieces that were never written.
    pub fn may_have_data(&self, offset: u64, len: u64) -> bool {
        self.spans.slices(offset, len).any(|slice| {
            let Some(f) = self.files.get(slice.file) else {
                return true;
            };
            match rustix::fs::seek(&f.file, rustix::fs::SeekFrom::Data(slice.offset)) {
                Ok(at) => at < slice.offset + slice.length,
                // ENXIO: no data at or after the offset.
                Err(rustix::io::Errno::NXIO) => false,
                // No hole support: assume data.
                Err(_) => true,
            }
        })
    }

    fn file(&self, index: usize) -> io::Result<&OpenFile> {
        self.files.get(index).ok_or_else(out_of_range)
    }
}

impl OpenFile {
    fn new(path: PathBuf, file: File) -> Self {
        OpenFile {
            path,
            file,
            dirty: AtomicBool::new(false),
        }
    }
}

/// Walks `rel` below `root_fd` one component at a time, creating folders,
/// never following a symlink, and opens the final file read-write.
fn open_beneath_fd(root_fd: &OwnedFd, rel: &SafeRelPath) -> io::Result<File> {
    let components = rel.components();
    let Some((name, folders)) = components.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir: Option<OwnedFd> = None;
    for folder in folders {
        let parent = dir.as_ref().unwrap_or(root_fd);
        match rustix::fs::mkdirat(parent, folder.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let next =
            rustix::fs::openat(parent, folder.as_str(), dir_flags, Mode::empty()).map_err(|e| {
                if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("refusing to follow {folder:?}: it is a symlink or not a folder"),
                    )
                } else {
                    e.into()
                }
            })?;
        dir = Some(next);
    }
    let parent = dir.as_ref().unwrap_or(root_fd);
    let fd = rustix::fs::openat(
        parent,
        name.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to follow the symlink {name:?}"),
            )
        } else {
            e.into()
        }
    })?;
    Ok(File::from(fd))
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "range outside the torrent")
}
