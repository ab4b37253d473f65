//! `bitfountain make`: writes a .torrent for a file or a folder, as the
//! seeds' `btmakemetafile` / `maketorrent-console` did.

mod repair;
mod walk;

pub use walk::{collect, is_published, SourceFile};

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use wire::bencode::OwnedValue;
use wire::{Limits, Metainfo, PieceGeometry};

use crate::storage::{hash_content, hash_pieces, FileSet};
use crate::ui::{human_bytes, Progress};

/// The magic tracker argument that asks for a Kenosis announce URL.
pub const KENOSIS_MAGIC: &str = "kenosisp2p";

/// Smallest and largest automatic piece sizes.
const AUTO_MIN_PIECE: u32 = 16 << 10;
const AUTO_MAX_PIECE: u32 = 16 << 20;

#[derive(Debug, Clone, Args)]
pub struct MakeArgs {
    /// The file or folder to publish. A folder is published as one unit,
    /// skipping CVS, core, Thumbs.db, desktop.ini and names starting with '.'.
    pub path: PathBuf,

    /// The tracker's announce URL (e.g. http://my.tracker:6969/announce),
    /// or `kenosisp2p` to write a Kenosis URL
    /// http://<sha1 of content>.bt.<zone>:<port>/announce that any
    /// Kenosis tracker can serve.
    pub url: String,

    /// More trackers, in order (BEP 12 announce-list). Each use is one tier;
    /// a comma-separated value puts several trackers in the same tier.
    #[arg(long = "tracker", short = 't', value_name = "URL[,URL...]")]
    pub trackers: Vec<String>,

    /// Piece size: a power of two from 16K to 64M, e.g. 256K or 1M.
    /// Default: automatic, aiming at 1000-2000 pieces (16K to 16M).
    #[arg(long, value_parser = parse_piece_size, value_name = "SIZE")]
    pub piece_size: Option<u32>,

    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,

    /// Mark the torrent private (no DHT or peer exchange; BEP 27).
    #[arg(long)]
    pub private: bool,

    /// Add an outer code: repair pieces (about PERCENT% of the piece count,
    /// plus a few) that let coded peers rebuild pieces nobody has any more.
    /// Only their BLAKE3 hashes go into the torrent (a `bf` dictionary in
    /// `info`, which legacy clients ignore).
    #[arg(long, default_value_t = 0, value_name = "PERCENT",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub repair: u32,

    /// Where to write the torrent. Default: PATH.torrent.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// DNS zone of Kenosis announce URLs.
    #[arg(long, default_value = "bt.kenosisp2p.org", value_name = "ZONE")]
    pub kenosis_zone: String,

    /// Port of Kenosis announce URLs.
    #[arg(long, default_value_t = 6969, value_name = "PORT")]
    pub kenosis_port: u16,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `make` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MadeTorrent {
    pub output: PathBuf,
    pub name: String,
    pub info_hash: String,
    pub total_length: u64,
    pub piece_length: u32,
    pub piece_count: u32,
    /// Repair pieces of the outer code (0 without `--repair`).
    pub repair_pieces: u32,
    pub files: usize,
    pub announce: String,
}

/// Parses `256K`, `1M`, `1048576`: a power of two within the limits.
pub fn parse_piece_size(text: &str) -> std::result::Result<u32, String> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 256K, 1M, 262144)"))?;
    let bytes = value.checked_shl(shift).unwrap_or(u64::MAX);
    if !bytes.is_power_of_two() || !(16 << 10..=64 << 20).contains(&bytes) {
        return Err(format!(
            "piece size must be a power of two from 16K to 64M, not {text}"
        ));
    }
    u32::try_from(bytes).map_err(|_| format!("piece size {text} is too large"))
}

/// The automatic piece size: a power of two giving 1000-2000 pieces where
/// the 16 KiB..16 MiB range allows.
pub fn auto_piece_size(total: u64) -> u32 {
    let target = total.div_ceil(2000).max(1);
    let size = target.checked_next_power_of_two().unwrap_or(u64::MAX);
    size.clamp(u64::from(AUTO_MIN_PIECE), u64::from(AUTO_MAX_PIECE)) as u32
}

/// Runs `make` from the command line.
pub fn run(args: &MakeArgs) -> Result<()> {
    let made = make_torrent(args, true)?;
    if args.json {
        println!("{}", serde_json::to_string(&made)?);
    } else {
        println!(
            "wrote {}: {} ({}), {} pieces of {}, info-hash {}",
            made.output.display(),
            made.name,
            human_bytes(made.total_length),
            made.piece_count,
            human_bytes(u64::from(made.piece_length)),
            made.info_hash
        );
        if made.repair_pieces > 0 {
            println!("outer code: {} repair pieces", made.repair_pieces);
        }
        println!("announce: {}", made.announce);
    }
    Ok(())
}

/// Builds and writes the torrent; `show_progress` draws a bar on a terminal.
pub fn make_torrent(args: &MakeArgs, show_progress: bool) -> Result<MadeTorrent> {
    let root = &args.path;
    let name = torrent_name(root)?;
    let files = collect(root)?;
    let single = files.len() == 1 && files.first().is_some_and(|f| f.components.is_empty());
    let total: u64 = files.iter().map(|f| f.length).sum();
    if total == 0 {
        bail!(
            "{} holds no data (every file is empty); a torrent needs at least one byte",
            root.display()
        );
    }
    let piece_length = args.piece_size.unwrap_or_else(|| auto_piece_size(total));
    let sources: Vec<(PathBuf, u64)> = files
        .iter()
        .map(|f| (f.disk_path.clone(), f.length))
        .collect();
    let reader = FileSet::open_read(&sources)?;
    let geometry =
        PieceGeometry::new(piece_length, total).context("too many pieces for this piece size")?;

    // Check every argument before the (long) hashing starts.
    let kenosis = args.url == KENOSIS_MAGIC;
    if kenosis {
        check_kenosis_zone(&args.kenosis_zone, args.kenosis_port)?;
    } else {
        check_url(&args.url)?;
    }
    let mut extra_tiers = Vec::new();
    for tier in &args.trackers {
        let urls: Vec<String> = tier
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        for url in &urls {
            check_url(url)?;
        }
        if !urls.is_empty() {
            extra_tiers.push(urls);
        }
    }

    let mut progress = Progress::bytes(
        "hashing",
        total,
        show_progress.then_some(Duration::from_secs(5)),
    );
    let all: Vec<u32> = (0..geometry.piece_count()).collect();
    let pieces = hash_pieces(&reader, geometry, &all, |done| progress.set(done))?;
    progress.finish();
    let outer = if args.repair > 0 {
        Some(repair::outer_info(
            &reader,
            geometry,
            args.repair,
            show_progress,
        )?)
    } else {
        None
    };

    let announce = if kenosis {
        let key = wire::ids::hex40(&hash_content(&reader)?);
        format!(
            "http://{key}.{}:{}/announce",
            args.kenosis_zone.trim_matches('.'),
            args.kenosis_port
        )
    } else {
        args.url.clone()
    };
    let mut tiers = vec![vec![announce.clone()]];
    tiers.extend(extra_tiers);
    let announce_list: &[Vec<String>] = if tiers.len() > 1 { &tiers } else { &[] };

    let info = build_info(
        &name,
        piece_length,
        &pieces,
        &files,
        single,
        args.private,
        outer.as_ref(),
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let bytes = Metainfo::encode_with_info(
        &info.to_bytes(),
        Some(&announce),
        announce_list,
        args.comment.as_deref(),
        Some(concat!("bitfountain ", env!("CARGO_PKG_VERSION"))),
        Some(created),
    );
    // Parse what we wrote with the same checks every download applies: a
    // file name that cannot be stored safely fails here, not on a peer.
    let meta =
        Metainfo::from_bytes(&bytes, &Limits::DEFAULT).context("the torrent built is not valid")?;

    let output = match &args.output {
        Some(out) => out.clone(),
        None => default_output(root),
    };
    crate::fsutil::write_atomic(&output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(MadeTorrent {
        output,
        name,
        info_hash: meta.info.info_hash.to_hex(),
        total_length: total,
        piece_length,
        piece_count: meta.info.piece_count(),
        repair_pieces: outer.as_ref().map_or(0, |o| o.repair_count()),
        files: files.len(),
        announce,
    })
}

fn build_info(
    name: &str,
    piece_length: u32,
    pieces: &[[u8; 20]],
    files: &[SourceFile],
    single: bool,
    private: bool,
    outer: Option<&wire::OuterInfo>,
) -> OwnedValue {
    let mut entries: Vec<(&str, OwnedValue)> = vec![
        ("name", OwnedValue::bytes(name)),
        ("piece length", OwnedValue::Int(i64::from(piece_length))),
        ("pieces", OwnedValue::Bytes(pieces.concat())),
    ];
    if single {
        let length = files.first().map_or(0, |f| f.length);
        entries.push(("length", OwnedValue::Int(length as i64)));
    } else {
        let list = files
            .iter()
            .map(|f| {
                OwnedValue::dict([
                    ("length", OwnedValue::Int(f.length as i64)),
                    (
                        "path",
                        OwnedValue::List(f.components.iter().map(OwnedValue::bytes).collect()),
                    ),
                ])
            })
            .collect();
        entries.push(("files", OwnedValue::List(list)));
    }
    if private {
        entries.push(("private", OwnedValue::Int(1)));
    }
    if let Some(outer) = outer {
        entries.push(("bf", outer.to_bencode()));
    }
    OwnedValue::dict(entries)
}

/// The torrent's name: the last component of the path (resolving `.`).
fn torrent_name(root: &Path) -> Result<String> {
    let resolved =
        std::fs::canonicalize(root).with_context(|| format!("cannot read {}", root.display()))?;
    let name = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "{} has no usable name (not UTF-8, or the root folder)",
                root.display()
            )
        })?;
    wire::path::check_component(name, &Limits::DEFAULT)
        .with_context(|| format!("{name:?} cannot be a torrent name"))?;
    Ok(name.to_owned())
}

/// `PATH.torrent`, next to the published file or folder.
fn default_output(root: &Path) -> PathBuf {
    let trimmed = root.to_string_lossy().trim_end_matches('/').to_owned();
    let base = if trimmed.is_empty() || trimmed == "." {
        "torrent".to_owned()
    } else {
        trimmed
    };
    PathBuf::from(format!("{base}.torrent"))
}

/// A Kenosis zone must make URLs that Kenosis clients recognise:
/// `<key>.bt.<domain>`, so the zone is `bt.<domain>`.
fn check_kenosis_zone(zone: &str, port: u16) -> Result<()> {
    let zone = zone.trim_matches('.');
    let sample = format!("http://0.{zone}:{port}/announce");
    if port == 0 || wire::kenosis::KenosisUrl::parse(&sample).is_err() {
        bail!(
            "--kenosis-zone {zone:?} with --kenosis-port {port} does not make a Kenosis URL \
             (the zone must be bt.<domain>, e.g. bt.kenosisp2p.org, and the port 1-65535)"
        );
    }
    Ok(())
}

fn check_url(url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("udp://"))
    {
        bail!(
            "tracker URL {url:?} must start with http://, https:// or udp:// (or use `kenosisp2p`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_sizes() {
        assert_eq!(parse_piece_size("256K"), Ok(256 << 10));
        assert_eq!(parse_piece_size("1m"), Ok(1 << 20));
        assert_eq!(parse_piece_size("32768"), Ok(32768));
        assert!(parse_piece_size("3M").is_err());
        assert!(parse_piece_size("8K").is_err());
        assert!(parse_piece_size("big").is_err());
        assert_eq!(auto_piece_size(1), 16 << 10);
        assert_eq!(auto_piece_size(1 << 30), 1 << 20); // 1 GiB -> 1024 pieces
        assert_eq!(auto_piece_size(1 << 40), 16 << 20);
        for total in [100u64 << 20, 3 << 30, 700 << 20] {
            let count = total.div_ceil(u64::from(auto_piece_size(total)));
            assert!((1000..=2000).contains(&count), "{total}: {count}");
        }
    }

    #[test]
    fn default_output_names() {
        assert_eq!(
            default_output(Path::new("dir/")),
            PathBuf::from("dir.torrent")
        );
        assert_eq!(
            default_output(Path::new("a/file.iso")),
            PathBuf::from("a/file.iso.torrent")
        );
    }
}
