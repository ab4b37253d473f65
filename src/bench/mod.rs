//! `bitfountain bench`: real peer processes, one per network namespace,
//! joined by a link emulator built into the project ([`netlab`]); scenarios
//! built in or from TOML ([`scenario`]), run with every variant alternating
//! within each repetition ([`runner`]); a table, JSON and plots ([`report`]).

pub mod calibrate;
pub mod cpu;
pub mod netlab;
pub mod peers;
pub mod plot;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod variants;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use report::{Report, VariantInfo};
use runner::{Bench, Options, RunResult};
use scenario::{Client, Scenario};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A built-in scenario (see --list) or a scenario .toml file (schema:
    /// benches/scenarios/README.md).
    pub scenario: Option<String>,

    /// Check the emulator: measured vs set delay, rate and loss (within 5%).
    #[arg(long, conflicts_with = "scenario")]
    pub calibrate: bool,

    /// List the built-in scenarios and the variants.
    #[arg(long)]
    pub list: bool,

    /// Repetitions (overrides the scenario's).
    #[arg(long, value_name = "N")]
    pub reps: Option<u32>,

    /// Variants to run, comma-separated (overrides the scenario's).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub variants: Option<Vec<String>>,

    /// Seconds per run (overrides the scenario's time_limit_s).
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,

    /// Where the JSON, Markdown table and plots go. Default:
    /// bench-results/<scenario>-<unix time>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Re-run a repetition once when the emulator handled 1% of packets
    /// later than this many milliseconds (a stalled emulator).
    #[arg(long, value_name = "MS", default_value_t = 2.0)]
    pub stall_ms: f64,
}

/// Set by SIGINT/SIGTERM; every loop of the bench polls it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM only raise a flag: the bench then unwinds normally
/// and its guards remove every process and namespace.
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "bitfountain bench needs root: it creates network namespaces and TUN devices \
             (try: sudo bitfountain bench ...). `bitfountain demo` runs without root."
        );
        std::process::exit(2);
    }
    catch_signals();
    if args.calibrate {
        let checks = calibrate::run()?;
        print!("{}", calibrate::table(&checks));
        if checks.iter().any(|c| !c.ok) {
            bail!("calibration: some measurements are more than 5% off");
        }
        return Ok(());
    }
    if args.list {
        print!("{}", list());
        return Ok(());
    }
    let Some(name) = &args.scenario else {
        bail!("name a scenario or a .toml file (see --list), or pass --calibrate");
    };
    run_scenario(name, args)
}

fn list() -> String {
    let mut out = String::from("scenarios:\n");
    for (name, text) in scenario::BUILT_IN {
        let d = Scenario::parse(text, name)
            .map(|s| s.description)
            .unwrap_or_default();
        out += &format!("  {name:<16} {d}\n");
    }
    out += "variants:\n";
    for v in variants::ALL {
        out += &format!(
            "  {:<18} {} (get {})\n",
            v.name,
            v.description,
            v.get_args.join(" ")
        );
    }
    out
}

/// Removes the bench's scratch folder (data copies, logs) when done.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("BITFOUNTAIN_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn run_scenario(name: &str, args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = report::Machine::describe();
    let mut sc = Scenario::load(name)?;
    if let Some(r) = args.reps {
        anyhow::ensure!((1..=1000).contains(&r), "--reps must be 1..1000");
        sc.repetitions = r;
    }
    if let Some(t) = args.time_limit {
        anyhow::ensure!(
            t > 0.0 && t <= 86_400.0,
            "--time-limit must be in (0, 86400]"
        );
        sc.time_limit_s = t;
    }
    if let Some(v) = &args.variants {
        for name in v {
            variants::find(name)?;
        }
        sc.variants = v.clone();
    }
    for c in [Client::Libtorrent, Client::Aria2] {
        if sc.uses(c) {
            peers::check_client(c)?;
        }
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let support = variants::Support::probe(&exe);
    let infos: Vec<VariantInfo> = sc
        .variants
        .iter()
        .filter_map(|n| variants::find(n).ok())
        .map(|v| {
            let reason = support.missing(v);
            VariantInfo {
                name: v.name.to_string(),
                description: v.description.to_string(),
                available: reason.is_none(),
                reason,
            }
        })
        .collect();
    eprint!("{}", report::skipped(&infos));
    let available: Vec<&variants::Variant> = infos
        .iter()
        .filter(|i| i.available)
        .filter_map(|i| variants::find(&i.name).ok())
        .collect();
    if available.is_empty() {
        bail!("none of this scenario's variants can run with this build (see above)");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("bench-results").join(format!("{}-{started_unix}", sc.name))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let work = std::env::temp_dir().join(format!("bf-bench-{}", std::process::id()));
    let _scratch = Scratch(work.clone());
    let opts = Options {
        exe,
        work,
        stall_us: (args.stall_ms * 1000.0) as u64,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut runs: Vec<RunResult> = Vec::new();
    let write = |runs: &[RunResult]| -> Result<Vec<report::Summary>> {
        let summary = report::summarise(&sc, runs, &infos);
        let rep = Report {
            scenario: &sc,
            command: command.clone(),
            started_unix,
            duration_s: started.elapsed().as_secs_f64(),
            machine: machine.clone(),
            variants: &infos,
            summary: &summary,
            runs,
        };
        let path = out.join("results.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&rep)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(summary)
    };
    let outcome = (|| -> Result<()> {
        let bench = Bench::new(&sc, &opts)?;
        let total = sc.repetitions as usize * sc.cells.len() * available.len();
        for rep in 0..sc.repetitions {
            for (ci, cell) in sc.cells.iter().enumerate() {
                // Variants alternate, and who goes first rotates, so a slow
                // drift of the machine does not favour one.
                for k in 0..available.len() {
                    let Some(v) = available.get((k + rep as usize) % available.len()) else {
                        continue;
                    };
                    let r = bench
                        .run(rep, ci, v)
                        .with_context(|| format!("repetition {rep}, {}, {}", cell.label, v.name))?;
                    let done = r.expected().filter(|p| p.completed_s.is_some()).count();
                    eprintln!(
                        "[{}/{total}] rep {} {} {}: {done}/{} done in {:.1} s, lateness p99 {:.2} ms{}",
                        runs.len() + 1,
                        rep + 1,
                        cell.label,
                        v.name,
                        r.expected().count(),
                        r.duration_s,
                        r.emulator.lateness.p99_us as f64 / 1000.0,
                        if r.attempt > 1 { " (re-run)" } else { "" }
                    );
                    runs.push(r);
                    write(&runs)?;
                }
            }
        }
        Ok(())
    })();
    let summary = write(&runs)?;
    outcome?;
    print!("{}", report::table(&summary));
    std::fs::write(out.join("table.md"), report::markdown(&summary))?;
    let names: Vec<String> = available.iter().map(|v| v.name.to_string()).collect();
    plot::completion_cdf(&out.join("cdf"), &sc, &runs, &names)?;
    plot::goodput_vs_loss(&out.join("goodput"), &sc, &summary, &names)?;
    println!(
        "{} runs in {:.0} s; results, table and plots in {}",
        runs.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
