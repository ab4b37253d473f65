//! The command line.

use clap::{Parser, Subcommand};

use crate::{bench, demo, get, make, show};

/// bitfountain: BitTorrent with fountain-coded transfer between capable
/// peers and Kenosis tracker discovery.
#[derive(Debug, Parser)]
#[command(name = "bitfountain", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a .torrent for a file or a folder (like btmakemetafile).
    Make(make::MakeArgs),
    /// Describe a .torrent: name, size, pieces, info-hash, files, trackers.
    Show(show::ShowArgs),
    /// Run an HTTP tracker (like bttrack.py --port 6969 --dfile dstate).
    Track(crate::tracker::TrackArgs),
    /// Download a torrent, then seed it (like btdownloadheadless). Point
    /// --saveas at complete data to check and seed it.
    #[command(visible_alias = "download")]
    Get(get::GetArgs),
    /// Mount a torrent's files read-only (FUSE) while it downloads: reads
    /// fetch the pieces they need first (streaming). Ctrl-C unmounts.
    Mount(crate::fs::MountArgs),
    /// Run a whole swarm on loopback: tracker, seed and leechers, with
    /// progress, a per-peer table and every copy verified.
    Demo(demo::DemoArgs),
    /// Run a bare Kenosis DHT node others bootstrap from (the seeds' root
    /// node on port 5005), or look up the tracker of a key with --lookup.
    Kenosis(crate::kenosis::cli::KenosisCmdArgs),
    /// Run the Kenosis DNS bridge: legacy clients resolving
    /// <key>.bt.<zone> get the address of the tracker the DHT chooses.
    Dns(crate::dns::DnsArgs),
    /// Benchmark coded against plain transfer on emulated links: real peers
    /// in network namespaces (needs root). `--calibrate` checks the emulator.
    Bench(bench::BenchArgs),
}

/// Runs the chosen command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Make(args) => make::run(&args),
        Command::Show(args) => show::run(&args),
        Command::Track(args) => crate::tracker::run(&args),
        Command::Get(args) => get::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Mount(args) => crate::fs::run(&args),
        Command::Kenosis(args) => crate::kenosis::cli::run(&args),
        Command::Dns(args) => crate::dns::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}
