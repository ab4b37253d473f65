//! Results: per (cell, variant) medians and spread, the table on stdout, a
//! Markdown copy for the README, and the JSON file with every run.

use serde::Serialize;

use super::runner::RunResult;
use super::scenario::Scenario;

/// A variant as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VariantInfo {
    pub name: String,
    pub description: String,
    pub available: bool,
    /// Why a variant did not run.
    pub reason: Option<String>,
}

/// One (cell, variant) aggregated over repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub cell: usize,
    pub label: String,
    pub rate_mbit: f64,
    pub rtt_ms: f64,
    pub loss_percent: f64,
    pub variant: String,
    pub runs: usize,
    pub reruns: usize,
    /// Leecher completions expected and achieved, over all runs.
    pub expected: usize,
    pub finished: usize,
    pub completion_s: Option<Spread>,
    /// Per-leecher goodput: file bits over its time from start to done
    /// (for one that never finished: bits it got over the time it had).
    pub goodput_mbit: Option<Spread>,
    /// IP bytes into the emulator per file byte the leechers gained.
    pub wire_ratio: Option<Spread>,
    /// CPU seconds of all peer processes per run.
    pub cpu_s: Option<Spread>,
    pub emulator_cpu_s: Option<Spread>,
    pub lateness_p99_max_us: u64,
}

/// Median with the extremes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(mut v: Vec<f64>) -> Option<Spread> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v.get(n / 2).copied().unwrap_or(0.0)
        } else {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        };
        Some(Spread {
            median,
            min: v.first().copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
            n,
        })
    }

    fn show(s: &Option<Spread>, digits: usize) -> String {
        match s {
            Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits),
            None => "–".into(),
        }
    }
}

/// Goodput of every expected leecher of a run, in Mbit/s.
pub fn goodputs(sc: &Scenario, run: &RunResult) -> Vec<f64> {
    run.expected()
        .map(|p| {
            let start = p.started_s.unwrap_or(0.0);
            match p.completed_s {
                Some(done) => sc.file_size as f64 * 8.0 / (done - start).max(1e-3) / 1e6,
                None => p.have_bytes as f64 * 8.0 / (run.duration_s - start).max(1e-3) / 1e6,
            }
        })
        .collect()
}

pub fn summarise(sc: &Scenario, runs: &[RunResult], variants: &[VariantInfo]) -> Vec<Summary> {
    let mut out = Vec::new();
    for (ci, cell) in sc.cells.iter().enumerate() {
        for v in variants.iter().filter(|v| v.available) {
            let rs: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.cell == ci && r.variant == v.name)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let expected = rs.iter().map(|r| r.expected().count()).sum();
            let finished = rs
                .iter()
                .map(|r| r.expected().filter(|p| p.completed_s.is_some()).count())
                .sum();
            let completion = rs
                .iter()
                .flat_map(|r| r.expected().filter_map(|p| p.completed_s))
                .collect();
            let goodput = rs.iter().flat_map(|r| goodputs(sc, r)).collect();
            let wire = rs
                .iter()
                .filter(|r| r.payload_bytes > 0)
                .map(|r| r.wire_bytes as f64 / r.payload_bytes as f64)
                .collect();
            let cpu = rs
                .iter()
                .map(|r| r.peers.iter().map(|p| p.cpu_s).sum())
                .collect();
            out.push(Summary {
                cell: ci,
                label: cell.label.clone(),
                rate_mbit: cell.link.rate_mbit,
                rtt_ms: cell.link.rtt_ms,
                loss_percent: cell.link.loss_percent,
                variant: v.name.clone(),
                runs: rs.len(),
                reruns: rs.iter().filter(|r| r.attempt > 1).count(),
                expected,
                finished,
                completion_s: Spread::of(completion),
                goodput_mbit: Spread::of(goodput),
                wire_ratio: Spread::of(wire),
                cpu_s: Spread::of(cpu),
                emulator_cpu_s: Spread::of(rs.iter().map(|r| r.emulator_cpu_s).collect()),
                lateness_p99_max_us: rs
                    .iter()
                    .map(|r| r.emulator.lateness.p99_us)
                    .max()
                    .unwrap_or(0),
            });
        }
    }
    out
}

const HEADERS: [&str; 9] = [
    "cell",
    "variant",
    "runs",
    "done",
    "completion s, median (min–max)",
    "goodput Mbit/s, median (min–max)",
    "wire/file",
    "peer CPU s",
    "late p99 ms",
];

fn rows(summary: &[Summary]) -> Vec<[String; 9]> {
    summary
        .iter()
        .map(|s| {
            [
                s.label.clone(),
                s.variant.clone(),
                if s.reruns > 0 {
                    format!("{} ({} re-run)", s.runs, s.reruns)
                } else {
                    s.runs.to_string()
                },
                format!("{}/{}", s.finished, s.expected),
                Spread::show(&s.completion_s, 1),
                Spread::show(&s.goodput_mbit, 1),
                s.wire_ratio
                    .map_or("–".into(), |w| format!("{:.3}", w.median)),
                s.cpu_s.map_or("–".into(), |c| format!("{:.1}", c.median)),
                format!("{:.2}", s.lateness_p99_max_us as f64 / 1000.0),
            ]
        })
        .collect()
}

/// The table for a terminal.
pub fn table(summary: &[Summary]) -> String {
    let rows = rows(summary);
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            s += c;
            s += &" ".repeat(w.saturating_sub(c.chars().count()) + 2);
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(HEADERS.to_vec());
    for r in &rows {
        out += &line(r.iter().map(|s| s.as_str()).collect());
    }
    out
}

/// The same table in Markdown.
pub fn markdown(summary: &[Summary]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for r in rows(summary) {
        out += &format!("| {} |\n", r.join(" | "));
    }
    out
}

/// Variants that could not run, one line each.
pub fn skipped(variants: &[VariantInfo]) -> String {
    variants
        .iter()
        .filter(|v| !v.available)
        .map(|v| {
            format!(
                "variant {}: {}\n",
                v.name,
                v.reason.as_deref().unwrap_or("skipped")
            )
        })
        .collect()
}

/// Everything, as the JSON file holds it.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub scenario: &'a Scenario,
    pub command: String,
    pub started_unix: u64,
    pub duration_s: f64,
    pub machine: Machine,
    pub variants: &'a [VariantInfo],
    pub summary: &'a [Summary],
    pub runs: &'a [RunResult],
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    /// The 1-minute load average when the bench started (the machine may be
    /// shared).
    pub load_at_start: f64,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_at_start: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_and_extremes() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, f64::NAN, 10.0]);
        assert!(s.is_some_and(|s| s.median == 2.5 && s.min == 1.0 && s.max == 10.0 && s.n == 4));
        assert!(Spread::of(vec![]).is_none());
    }
}
