//! `bitfountain show`: what a .torrent holds.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use wire::{Limits, Metainfo};

use crate::ui::human_bytes;

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The .torrent file (or a magnet link) to describe. A magnet link is
    /// described as it is, without fetching its metadata.
    pub torrent: PathBuf,

    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct ShowJson<'a> {
    name: &'a str,
    info_hash: String,
    total_length: u64,
    piece_length: u32,
    piece_count: u32,
    /// Repair pieces of the outer code (`bf`), 0 without one.
    repair_pieces: u32,
    private: bool,
    single_file: bool,
    files: Vec<FileJson>,
    trackers: Vec<Vec<String>>,
    comment: Option<&'a str>,
    created_by: Option<&'a str>,
    creation_date: Option<i64>,
    /// A magnet link for the torrent (info-hash, name, trackers).
    magnet: String,
}

#[derive(Debug, serde::Serialize)]
struct MagnetJson<'a> {
    info_hash: String,
    name: Option<&'a str>,
    trackers: &'a [String],
    peers: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct FileJson {
    path: String,
    length: u64,
}

/// Reads and checks a torrent file, naming the file in any error.
pub fn load_torrent(path: &std::path::Path) -> Result<Metainfo> {
    let limits = Limits::DEFAULT;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > limits.metainfo_max_size as u64 {
        anyhow::bail!(
            "{} is {} bytes, larger than any torrent we accept ({} bytes)",
            path.display(),
            meta.len(),
            limits.metainfo_max_size
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::from_bytes(&bytes, &limits)
        .with_context(|| format!("{} is not a valid torrent", path.display()))
}

/// A magnet link for a torrent: info-hash, name and every tracker.
pub fn magnet_of(meta: &Metainfo) -> wire::Magnet {
    wire::Magnet {
        info_hash: meta.info.info_hash,
        display_name: Some(meta.info.name.clone()),
        trackers: meta.tracker_tiers().into_iter().flatten().collect(),
        peers: Vec::new(),
    }
}

/// The magnet link in `arg`, if it is one (a path never starts with
/// `magnet:`, and a file of that name would be an odd thing to have).
pub fn as_magnet(arg: &std::path::Path) -> Option<Result<wire::Magnet>> {
    let text = arg.to_str()?;
    text.get(..7)
        .filter(|p| p.eq_ignore_ascii_case("magnet:"))
        .map(|_| wire::Magnet::parse(text, &Limits::DEFAULT).context("bad magnet link"))
}

fn show_magnet(m: &wire::Magnet, json: bool) -> Result<()> {
    if json {
        let out = MagnetJson {
            info_hash: m.info_hash.to_hex(),
            name: m.display_name.as_deref(),
            trackers: &m.trackers,
            peers: m.peers.iter().map(ToString::to_string).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("magnet link (metadata comes from peers on `get`)");
    println!(
        "name:       {}",
        m.display_name.as_deref().unwrap_or("(not given)")
    );
    println!("info-hash:  {}", m.info_hash);
    if m.trackers.is_empty() {
        println!("trackers:   none");
    }
    for (i, t) in m.trackers.iter().enumerate() {
        println!("tracker {}:  {t}", i + 1);
    }
    for p in &m.peers {
        println!("peer:       {p}");
    }
    Ok(())
}

pub fn run(args: &ShowArgs) -> Result<()> {
    if let Some(magnet) = as_magnet(&args.torrent) {
        return show_magnet(&magnet?, args.json);
    }
    let meta = load_torrent(&args.torrent)?;
    let info = &meta.info;
    if args.json {
        let json = ShowJson {
            name: &info.name,
            info_hash: info.info_hash.to_hex(),
            total_length: info.total_length(),
            piece_length: info.geometry.piece_length(),
            piece_count: info.piece_count(),
            repair_pieces: info.outer.as_ref().map_or(0, |o| o.repair_count()),
            private: info.private,
            single_file: info.single_file,
            files: info
                .files
                .iter()
                .map(|f| FileJson {
                    path: f.path.display(),
                    length: f.length,
                })
                .collect(),
            trackers: meta.tracker_tiers(),
            comment: meta.comment.as_deref(),
            created_by: meta.created_by.as_deref(),
            creation_date: meta.creation_date,
            magnet: magnet_of(&meta).to_uri(),
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("name:       {}", info.name);
    println!("info-hash:  {}", info.info_hash);
    println!(
        "size:       {} ({} bytes)",
        human_bytes(info.total_length()),
        info.total_length()
    );
    println!(
        "pieces:     {} x {}",
        info.piece_count(),
        human_bytes(u64::from(info.geometry.piece_length()))
    );
    if let Some(outer) = &info.outer {
        println!(
            "outer code: {} repair pieces (T = {})",
            outer.repair_count(),
            outer.symbol_size
        );
    }
    if info.private {
        println!("private:    yes");
    }
    if let Some(c) = &meta.comment {
        println!("comment:    {c}");
    }
    if let Some(by) = &meta.created_by {
        println!("created by: {by}");
    }
    let tiers = meta.tracker_tiers();
    if tiers.is_empty() {
        println!("trackers:   none");
    }
    for (i, tier) in tiers.iter().enumerate() {
        println!("tracker {}:  {}", i + 1, tier.join(", "));
    }
    println!("magnet:     {}", magnet_of(&meta).to_uri());
    println!("files:      {}", info.files.len());
    for f in &info.files {
        println!("  {:>12}  {}", f.length, f.path.display());
    }
    Ok(())
}
