//! A progress display that is a bar on a terminal and a periodic plain line
//! (or nothing) when output goes to a file or a pipe.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{human_bytes, human_rate};

/// Progress of a long job measured in bytes.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    started: Instant,
    last_line: Instant,
    line_every: Option<Duration>,
}

impl Progress {
    /// A byte-counting progress display. On a terminal it draws a bar on
    /// stderr; otherwise it prints a plain line to stderr every
    /// `line_every` (or stays silent when `None`).
    pub fn bytes(label: &str, total: u64, line_every: Option<Duration>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            label: label.to_owned(),
            total,
            started: now,
            last_line: now,
            line_every,
        }
    }

    /// Reports the absolute number of bytes done so far.
    pub fn set(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        if let Some(every) = self.line_every {
            if self.last_line.elapsed() >= every {
                self.last_line = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "{}: {} / {} ({:.0}%), {}",
                    self.label,
                    human_bytes(done),
                    human_bytes(self.total),
                    100.0 * done as f64 / self.total.max(1) as f64,
                    human_rate(done as f64 / secs)
                );
            }
        }
    }

    /// Ends the display.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
