//! The access log: one Common Log Format line per request on stdout, as the
//! seeds' trackers did ("the tracker outputs web logs to standard out").
//!
//! Requests append to an in-memory buffer (one short lock); a dedicated
//! thread does the writing. Handlers therefore never wait on a slow stdout:
//! if the reader of stdout falls far behind, whole chunks are dropped and
//! counted rather than stalling the tracker.

use std::io::Write;
use std::mem;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Buffered bytes that trigger a hand-off to the writer thread.
const CHUNK: usize = 64 << 10;
/// Chunks queued for the writer before new ones are dropped (~4 MiB).
const QUEUE: usize = 64;
/// Longest request line we log; the rest is cut (the query limit is larger).
const MAX_REQUEST_LINE: usize = 2048;

struct Inner {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    /// Cached `[10/Oct/2000:13:55:36 +0000]` and the second it shows.
    stamp: (u64, String),
}

pub(crate) struct AccessLog {
    inner: Mutex<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped_lines: AtomicU64,
}

impl AccessLog {
    /// A log writing to `sink` from a background thread.
    pub fn new(mut sink: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("tracker-log".into())
            .spawn(move || {
                for chunk in rx {
                    // A closed stdout is not worth dying for.
                    let _ = sink.write_all(&chunk);
                    let _ = sink.flush();
                }
            })?;
        Ok(AccessLog {
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(CHUNK + MAX_REQUEST_LINE + 128),
                tx: Some(tx),
                stamp: (0, String::new()),
            }),
            writer: Mutex::new(Some(writer)),
            dropped_lines: AtomicU64::new(0),
        })
    }

    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// Logs one request: `host - - [time] "request line" status bytes`.
    pub fn record(
        &self,
        client: IpAddr,
        method: &str,
        target: &str,
        version: &str,
        status: u16,
        bytes: usize,
    ) {
        let now = super::store::unix_now();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        if inner.stamp.0 != now || inner.stamp.1.is_empty() {
            inner.stamp = (now, clf_time(now));
        }
        let buf = &mut inner.buf;
        let _ = write!(buf, "{} - - {} \"", client.to_canonical(), inner.stamp.1);
        escape_into(buf, method.as_bytes());
        buf.push(b' ');
        escape_into(buf, target.as_bytes());
        buf.push(b' ');
        escape_into(buf, version.as_bytes());
        let _ = writeln!(buf, "\" {status} {bytes}");
        if buf.len() >= CHUNK {
            let chunk = mem::replace(buf, Vec::with_capacity(CHUNK + MAX_REQUEST_LINE + 128));
            self.send(inner.tx.as_ref(), chunk);
        }
    }

    fn send(&self, tx: Option<&SyncSender<Vec<u8>>>, chunk: Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        let lost = match tx {
            Some(tx) => match tx.try_send(chunk) {
                Ok(()) => return,
                Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => c,
            },
            None => chunk,
        };
        let lines = lost.iter().filter(|b| **b == b'\n').count() as u64;
        self.dropped_lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Hands whatever is buffered to the writer (called a few times a second).
    pub fn flush(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let chunk = mem::take(&mut g.buf);
        self.send(g.tx.as_ref(), chunk);
    }

    /// Flushes, stops the writer thread and waits for it to finish writing.
    pub fn close(&self) {
        let tx = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let chunk = mem::take(&mut g.buf);
            let tx = g.tx.take();
            if let Some(tx) = &tx {
                if !chunk.is_empty() {
                    // Blocking send: at shutdown, completeness beats latency.
                    let _ = tx.send(chunk);
                }
            }
            tx
        };
        drop(tx);
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Copies a request-line part, escaping what could forge or break a log line
/// (quotes, backslashes, control and non-ASCII bytes) as `\xHH`, and cutting
/// overlong text.
fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    let cut = text.len() > MAX_REQUEST_LINE;
    let text = text.get(..MAX_REQUEST_LINE).unwrap_or(text);
    let safe = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    // Request targets are URI characters, so the copy is usually one piece.
    if text.iter().all(|b| safe(*b)) {
        out.extend_from_slice(text);
    } else {
        for &b in text {
            if safe(b) {
                out.push(b);
            } else {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if cut {
        out.extend_from_slice(b"...");
    }
}

/// `[10/Oct/2000:13:55:36 +0000]` for a Unix time (UTC).
pub(crate) fn clf_time(unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS.get((m as usize).saturating_sub(1)).unwrap_or(&"Jan");
    format!(
        "[{d:02}/{month}/{y:04}:{:02}:{:02}:{:02} +0000]",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn formats_dates() {
        assert_eq!(clf_time(0), "[01/Jan/1970:00:00:00 +0000]");
        assert_eq!(clf_time(971_186_136), "[10/Oct/2000:13:55:36 +0000]");
        assert_eq!(clf_time(1_709_210_096), "[29/Feb/2024:12:34:56 +0000]");
    }

    #[test]
    fn writes_escaped_clf_lines() {
        let sink = Shared::default();
        let log = AccessLog::new(Box::new(sink.clone())).unwrap();
        let ip: IpAddr = "::ffff:198.18.0.2".parse().unwrap();
        log.record(ip, "GET", "/announce?x=\"a\"\n", "HTTP/1.1", 200, 57);
        log.close();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line = text.strip_suffix('\n').unwrap();
        assert!(line.starts_with("198.18.0.2 - - ["), "{line}");
        assert!(
            line.ends_with(" +0000] \"GET /announce?x=\\x22a\\x22\\x0a HTTP/1.1\" 200 57"),
            "{line}"
        );
        assert_eq!(log.dropped_lines(), 0);
    }
}
