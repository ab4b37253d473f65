//! The FUSE side of TorFS (fuser's low-level `Filesystem`): read-only
//! lookups, attributes and listings from the [`Tree`], and reads served
//! from the torrent's storage once the pieces under them are verified.
//!
//! fuser runs one request loop; a read that waits for pieces must not hold
//! it up (a `ls` would hang behind a streaming read), so reads are answered
//! from a task on the tokio runtime.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use super::tree::{Kind, Tree};
use super::Reader;

/// The tree never changes, so the kernel may cache attributes; sizes are
/// final from the start.
const TTL: Duration = Duration::from_secs(60);

pub struct TorFs {
    pub tree: Tree,
    pub reader: Arc<Reader>,
    pub runtime: tokio::runtime::Handle,
    /// Shown as every file's times.
    pub mtime: SystemTime,
    pub uid: u32,
    pub gid: u32,
}

impl TorFs {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.tree.get(ino)?;
        let (kind, size, perm, nlink) = match &node.kind {
            Kind::Dir { .. } => (FileType::Directory, 0, 0o555, 2),
            Kind::File { length, .. } => (FileType::RegularFile, *length, 0o444, 1),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 << 10,
            flags: 0,
        })
    }
}

impl Filesystem for TorFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = name
            .to_str()
            .and_then(|n| self.tree.lookup(parent.0, n))
            .and_then(|ino| self.attr(ino));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.tree.get(ino.0).map(|n| &n.kind) {
            Some(Kind::File { .. }) if flags.acc_mode() == OpenAccMode::O_RDONLY => {
                // Keep the page cache between opens: the bytes never change.
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(Kind::File { .. }) => reply.error(Errno::EROFS),
            Some(Kind::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(Kind::File {
            offset: start,
            length,
        }) = self.tree.get(ino.0).map(|n| &n.kind)
        else {
            reply.error(Errno::EISDIR);
            return;
        };
        if offset >= *length || size == 0 {
            reply.data(&[]);
            return;
        }
        let len = u64::from(size).min(length - offset);
        let at = start + offset;
        let reader = self.reader.clone();
        self.runtime.spawn(async move {
            match reader.read(at, len as usize).await {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    tracing::warn!("read of {len} bytes at {at} failed: {e:#}");
                    reply.error(Errno::EIO);
                }
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(node) = self.tree.get(ino.0) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let Kind::Dir { children } = &node.kind else {
            reply.error(Errno::ENOTDIR);
            return;
        };
        let dots = [
            (ino.0, FileType::Directory, "."),
            (node.parent, FileType::Directory, ".."),
        ];
        let entries = dots
            .into_iter()
            .chain(children.iter().map(|(name, &child)| {
                let kind = match self.tree.get(child).map(|n| &n.kind) {
                    Some(Kind::Dir { .. }) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                (child, kind, name.as_str())
            }));
        // `offset` is the index after the last entry the kernel already has.
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    /// Nothing is ever written, so there is nothing to flush on close.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// No extended attributes (asked for by `ls -l`, SELinux labels...).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let total = self.reader.total_length();
        reply.statfs(
            total.div_ceil(4096),
            0,
            0,
            self.tree.len() as u64,
            0,
            4096,
            255,
            4096,
        );
    }
}
