//! The writing half of a peer connection, in its own task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// The writing half of a connection, in its own task. Messages are queued
/// as separate buffers and written with vectored writes, so a block's
/// payload goes from the piece cache to the socket without a copy.
pub(crate) struct Writer {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    queued: Arc<AtomicUsize>,
    pub(crate) drained: Arc<Notify>,
    pub(crate) failed: CancellationToken,
}

impl Writer {
    pub(crate) fn spawn<W: AsyncWrite + Send + Unpin + 'static>(mut wr: W) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let queued = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let failed = CancellationToken::new();
        let (q, d, f) = (queued.clone(), drained.clone(), failed.clone());
        tokio::spawn(async move {
            let mut queue: VecDeque<Bytes> = VecDeque::new();
            while let Some(first) = rx.recv().await {
                queue.push_back(first);
                // Take whatever else is waiting into the same write.
                while queue.len() < MAX_IOVECS {
                    match rx.try_recv() {
                        Ok(more) => queue.push_back(more),
                        Err(_) => break,
                    }
                }
                let len: usize = queue.iter().map(Bytes::len).sum();
                if write_all_vectored(&mut wr, &mut queue).await.is_err() {
                    f.cancel();
                    return;
                }
                q.fetch_sub(len, Ordering::AcqRel);
                d.notify_one();
            }
            let _ = wr.shutdown().await;
        });
        Writer {
            tx: Some(tx),
            queued,
            drained,
            failed,
        }
    }

    pub(crate) fn send(&self, bytes: Bytes) {
        if let Some(tx) = &self.tx {
            self.queued.fetch_add(bytes.len(), Ordering::AcqRel);
            if tx.send(bytes).is_err() {
                self.failed.cancel();
            }
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Lets the writer flush what is queued and close the stream.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

/// Buffers handed to one vectored write (Linux allows 1024).
const MAX_IOVECS: usize = 128;

/// Writes every queued buffer, as few system calls as the kernel allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    queue: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !queue.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> =
            queue.iter().map(|b| std::io::IoSlice::new(b)).collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                queue.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }
    Ok(())
}
