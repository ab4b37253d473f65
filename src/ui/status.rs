//! Live status of a download or seed: a progress bar on a terminal, one
//! plain line per interval otherwise, or JSON lines for scripts.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{human_bytes, human_rate};
use crate::session::status::TorrentStatus;

/// How status is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    Bar,
    Lines,
    Json,
}

impl StatusMode {
    /// `--json` wins; otherwise a bar when stderr is a terminal.
    pub fn choose(json: bool) -> Self {
        if json {
            StatusMode::Json
        } else if std::io::stderr().is_terminal() {
            StatusMode::Bar
        } else {
            StatusMode::Lines
        }
    }
}

pub struct StatusPrinter {
    mode: StatusMode,
    bar: Option<ProgressBar>,
    every: Duration,
    last: Option<Instant>,
}

impl StatusPrinter {
    pub fn new(mode: StatusMode, every: Duration) -> Self {
        StatusPrinter {
            mode,
            bar: None,
            every,
            last: None,
        }
    }

    /// One line describing the status, for logs and plain output.
    pub fn line(s: &TorrentStatus) -> String {
        let pct = 100.0 * s.have_bytes as f64 / s.total_bytes.max(1) as f64;
        let (plain, coded) = s.plain_and_coded();
        let coded_part = if coded > 0 {
            format!(
                ", received {} plain / {} coded",
                human_bytes(plain),
                human_bytes(coded)
            )
        } else {
            String::new()
        };
        format!(
            "{}: {:.1}% of {}, down {} up {}, {} peers, {}{}",
            s.name,
            pct,
            human_bytes(s.total_bytes),
            human_rate(s.down_rate),
            human_rate(s.up_rate),
            s.peers.len(),
            s.phase,
            coded_part
        )
    }

    /// Shows a new status (bars update every call, lines and JSON once per
    /// interval; `force` prints regardless).
    pub fn update(&mut self, s: &TorrentStatus, force: bool) {
        match self.mode {
            StatusMode::Bar => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(s.total_bytes);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg:30!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar
                });
                bar.set_position(s.have_bytes);
                bar.set_message(format!(
                    "{} ({})  down {} up {} peers {}",
                    s.name,
                    s.phase,
                    human_rate(s.down_rate),
                    human_rate(s.up_rate),
                    s.peers.len()
                ));
            }
            StatusMode::Lines | StatusMode::Json => {
                let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
                if !(due || force) {
                    return;
                }
                self.last = Some(Instant::now());
                if self.mode == StatusMode::Json {
                    if let Ok(json) = serde_json::to_string(s) {
                        println!("{json}");
                    }
                } else {
                    println!("{}", Self::line(s));
                }
            }
        }
    }

    /// Prints a message above the bar (or as its own line).
    pub fn note(&self, text: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.println(text),
            (None, StatusMode::Json) => {
                println!(
                    "{}",
                    serde_json::json!({ "event": "note", "message": text })
                );
            }
            (None, _) => println!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
