//! `bitfountain mount` (TorFS): the torrent's files as a read-only FUSE
//! file system, there at once while the torrent downloads (and seeds). A
//! read of bytes whose pieces are missing raises those pieces to top
//! priority and returns as soon as they are verified, so a file can be
//! streamed from the start or read at any offset (files over 4 GiB too:
//! every offset is 64-bit). The seeds' TorFS worked only on complete
//! downloads.
//!
//! Built on `fuser` without its libfuse feature: the kernel protocol is
//! spoken in Rust and only `fusermount3` (Debian's fuse3) is needed to
//! mount. Ctrl-C or SIGTERM unmounts and exits; `fusermount3 -u` from
//! outside ends the process too; with `auto_unmount` even a killed process
//! leaves no stuck mount.

mod fuse;
mod tree;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::get::{GetArgs, Started};
use crate::session::torrent::{PeerCmd, TorrentShared};

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// The torrent (a .torrent file or a magnet link) and every `get`
    /// option (--saveas for the data, --peer, rate limits, ...).
    #[command(flatten)]
    pub get: GetArgs,

    /// The (empty) folder to mount the torrent's files on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,

    /// Seconds a read waits for missing pieces before failing with EIO.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub read_timeout: u64,
}

/// Reads byte ranges of the torrent for the file system, waiting for (and
/// prioritising) missing pieces.
pub struct Reader {
    torrent: Arc<TorrentShared>,
    wait_limit: Duration,
    /// Cancelled before unmounting: waiting reads answer EIO at once, so
    /// no request is left open in the kernel while the mount goes away.
    stop: tokio_util::sync::CancellationToken,
}

impl Reader {
    pub fn total_length(&self) -> u64 {
        self.torrent.info.total_length()
    }

    /// `len` bytes at `at` in the torrent's byte stream (across files).
    pub async fn read(&self, at: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let piece_length = u64::from(self.torrent.info.geometry.piece_length());
        let last_byte = at
            .checked_add(len as u64 - 1)
            .filter(|&b| b < self.total_length())
            .context("read past the end of the torrent")?;
        let first = u32::try_from(at / piece_length)?;
        let last = u32::try_from(last_byte / piece_length)?;
        self.wait_for(first..=last).await?;
        let storage = self.torrent.storage.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            storage.read_at(at, &mut buf).map(|()| buf)
        })
        .await?
        .context("cannot read the data")
    }

    /// Returns once every piece of `pieces` is verified; the first time
    /// some are missing they become top priority and every peer is asked to
    /// request again at once.
    async fn wait_for(&self, pieces: RangeInclusive<u32>) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.wait_limit;
        let mut raised = false;
        loop {
            // Registered before looking, so a piece verified in between
            // still wakes us.
            let notified = self.torrent.piece_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.torrent.lock();
                let missing: Vec<u32> = pieces
                    .clone()
                    .filter(|&p| !st.picker.done().has(p))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                if !raised {
                    tracing::debug!(?missing, "read waits for pieces: top priority");
                    st.picker.prioritize(missing);
                    for p in st.peers.values() {
                        let _ = p.tx.send(PeerCmd::Refill);
                    }
                    raised = true;
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    bail!("pieces {pieces:?} did not arrive within {:?}", self.wait_limit)
                }
                _ = self.torrent.shutdown.cancelled() => bail!("shutting down"),
                _ = self.stop.cancelled() => bail!("unmounting"),
            }
        }
    }
}

/// Runs `mount` until Ctrl-C, SIGTERM or an unmount from outside.
pub fn run(args: &MountArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &MountArgs) -> Result<()> {
    let Some(mountpoint) = args.mountpoint.clone() else {
        bail!("missing MOUNTPOINT: bitfountain mount FILE.torrent MOUNTPOINT");
    };
    if !mountpoint.is_dir() {
        bail!("mount point {} is not a folder", mountpoint.display());
    }
    if args.get.ui {
        bail!("-g is for `get`; `mount` prints status lines");
    }
    let Started {
        session,
        handle,
        saveas,
        mut printer,
    } = crate::get::start(&args.get).await?;
    let reader = Arc::new(Reader {
        torrent: handle.shared.clone(),
        wait_limit: Duration::from_secs(args.read_timeout.max(1)),
        stop: tokio_util::sync::CancellationToken::new(),
    });
    let stop_reads = reader.stop.clone();
    let fs = fuse::TorFs {
        tree: tree::Tree::new(&handle.shared.info),
        reader,
        runtime: tokio::runtime::Handle::current(),
        mtime: SystemTime::now(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("bitfountain".to_owned()),
        fuser::MountOption::Subtype("torfs".to_owned()),
        // fusermount3 stays behind and unmounts if we die without doing it.
        fuser::MountOption::AutoUnmount,
        fuser::MountOption::DefaultPermissions,
    ];
    // auto_unmount needs allow_root or allow_other.
    config.acl = fuser::SessionACL::RootAndOwner;
    let at = mountpoint.clone();
    // Mounting waits for the kernel's INIT: keep it off the reactor.
    let mounted = tokio::task::spawn_blocking(move || fuser::spawn_mount(fs, &at, &config))
        .await?
        .with_context(|| {
            format!(
                "cannot mount on {} (is fuse3's fusermount3 installed?)",
                mountpoint.display()
            )
        })?;
    printer.note(&format!(
        "{} mounted on {} (data in {}); Ctrl-C or `fusermount3 -u {}` to unmount",
        handle.shared.info.name,
        mountpoint.display(),
        saveas.display(),
        mountpoint.display()
    ));
    let mut status = handle.watch();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    let unmounted_outside = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break false,
            _ = sigterm.recv() => break false,
            _ = poll.tick() => {
                // The session thread ends when someone unmounts us.
                if mounted.guard.is_finished() {
                    break true;
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    break false;
                }
                let s = status.borrow_and_update().clone();
                printer.update(&s, false);
            }
        }
    };
    // Unmount first (pending reads fail as the kernel drops them), then
    // stop the torrent. fuser's own unmount in auto_unmount mode only hands
    // the job to the fusermount3 watchdog, which waits for us to exit; we
    // detach the mount ourselves so it is gone before we stop seeding.
    stop_reads.cancel();
    if !unmounted_outside {
        if let Err(e) = unmount(&mountpoint) {
            tracing::warn!("{e:#}");
        }
    }
    // The session thread ends once the kernel drops the connection. Wait
    // for it on a plain thread: a blocking task that never ended would
    // keep the runtime (and the process) from exiting.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(mounted.join());
    });
    match done_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("file system session: {e}"),
        Err(_) => tracing::warn!("file system session did not end within 10 s"),
    }
    printer.note(&format!("unmounted {}", args.mountpoint_display()));
    printer.finish();
    session.shutdown().await;
    Ok(())
}

/// Detaches the mount (`fusermount3 -u -z`: lazily, so a shell whose
/// folder is inside does not keep it mounted).
fn unmount(mountpoint: &std::path::Path) -> Result<()> {
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .stdin(std::process::Stdio::null())
        .status()
        .context("cannot run fusermount3 -u")?;
    if !status.success() {
        bail!("fusermount3 -u {} failed ({status})", mountpoint.display());
    }
    Ok(())
}

impl MountArgs {
    fn mountpoint_display(&self) -> String {
        self.mountpoint
            .as_ref()
            .map(|m| m.display().to_string())
            .unwrap_or_default()
    }
}
