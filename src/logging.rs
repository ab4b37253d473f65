//! Log setup: `tracing` to stderr, level from `-v` or `RUST_LOG`.
//!
//! While the full-screen interface (`get -g`) owns the terminal, log lines
//! must not be written over it: [`capture_start`] diverts them into a
//! bounded in-memory ring that the interface's log view shows.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Lines kept for the log view; older ones are dropped.
const RING_LINES: usize = 2000;

/// `Some` while log lines go to the ring instead of stderr.
static CAPTURE: Mutex<Option<VecDeque<String>>> = Mutex::new(None);

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn,bitfountain=info",
        1 => "info,bitfountain=debug",
        _ => "debug,bitfountain=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EventWriter::default)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// From now on, log lines go to the ring (the terminal belongs to the
/// interface).
pub fn capture_start() {
    let mut c = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    if c.is_none() {
        *c = Some(VecDeque::new());
    }
}

/// Log lines go to stderr again; the ring is dropped.
pub fn capture_stop() {
    *CAPTURE.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// The last `n` captured lines, oldest first.
pub fn captured_tail(n: usize) -> Vec<String> {
    let c = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
    c.as_ref()
        .map(|ring| {
            ring.iter()
                .skip(ring.len().saturating_sub(n))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Collects one event's text, then hands it to the ring or stderr when
/// dropped (the formatter makes one writer per event).
#[derive(Default)]
struct EventWriter {
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut capture = CAPTURE.lock().unwrap_or_else(|p| p.into_inner());
        match capture.as_mut() {
            Some(ring) => {
                let text = strip_ansi(&String::from_utf8_lossy(&self.buf));
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if ring.len() >= RING_LINES {
                        ring.pop_front();
                    }
                    ring.push_back(line.to_owned());
                }
            }
            None => {
                drop(capture);
                let _ = std::io::stderr().write_all(&self.buf);
            }
        }
    }
}

/// Removes ANSI escape sequences (colours) from captured text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters until the final byte (@ to ~).
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m hi"),
            "2026  INFO hi"
        );
    }
}
