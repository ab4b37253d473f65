//! Magnet links (BEP 9 metadata over BEP 10) against real clients: we
//! download from python3-libtorrent (peers from the link's `tr=` tracker)
//! and from Transmission (the link's `x.pe=` peer, no tracker at all),
//! and libtorrent downloads from our seed, each side given only a magnet
//! link. Every party runs in the test's network namespace.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use harness::clients::{self, Transmission};
use harness::netns::Netns;
use harness::*;

const TRACKER_IP: &str = "198.18.0.1";
const OUR_IP: &str = "198.18.0.2";
const THEIR_IP: &str = "198.18.0.3";
const ANNOUNCE: &str = "http://198.18.0.1:6969/announce";
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);

/// One test at a time: two cores, real clients, fixed addresses.
static SERIAL: Mutex<()> = Mutex::new(());

struct Fixture {
    _root: tempfile::TempDir,
    /// Folder holding `NAME`.
    dir: PathBuf,
    torrent: PathBuf,
    info_hash: String,
}

const NAME: &str = "magnet-data.bin";

/// A 16 MiB file in 1024 pieces of 16 KiB, so the metadata (20 KiB of
/// piece hashes) spans two ut_metadata pieces.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = temp_dir("magnet-data");
        let dir = root.path().join("src");
        write_random_file(&dir.join(NAME), 16 << 20, 77);
        let torrent = root.path().join("data.torrent");
        run_ok(
            bitfountain()
                .arg("make")
                .arg(dir.join(NAME))
                .arg(ANNOUNCE)
                .args(["--piece-size", "16K", "-o"])
                .arg(&torrent),
        );
        let show = stdout_of(bitfountain().args(["show", "--json"]).arg(&torrent));
        let json: serde_json::Value = serde_json::from_str(&show).unwrap();
        assert!(json["piece_count"].as_u64().unwrap() * 20 > 16 << 10);
        Fixture {
            _root: root,
            dir,
            torrent,
            info_hash: json["info_hash"].as_str().unwrap().to_owned(),
        }
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default()
        + &std::fs::read_to_string(path.with_extension("stderr")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs our client on `magnet` until it exits; checks the data.
fn we_download(ns: &Netns, magnet: &str, work: &Path, who: &str) {
    let f = fixture();
    let saveas = work.join("got").join(NAME);
    let log = work.join("ours.log");
    let mut ours = clients::ours(
        ns,
        Path::new(magnet),
        &saveas,
        OUR_IP,
        &["--exit-on-complete", "--metadata-timeout", "90"],
        &log,
    );
    let status = ours.wait_timeout(TRANSFER_TIMEOUT);
    assert!(
        matches!(status, Some(s) if s.success()),
        "{who} -> us by magnet: our client did not finish ({status:?}); log:\n{}",
        tail(&log)
    );
    assert!(
        clients::same_tree(&saveas, &f.dir.join(NAME)),
        "{who} -> us by magnet: data differs"
    );
    let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
    assert!(
        stderr.contains("metadata (") && stderr.contains(&format!("from {THEIR_IP}:")),
        "the metadata did not come from {who}:\n{}",
        tail(&log)
    );
}

#[test]
fn we_download_from_libtorrent_by_magnet_with_tracker() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = fixture();
    let ns = Netns::new("mag-lt", &[TRACKER_IP, OUR_IP, THEIR_IP]);
    let work = temp_dir("magnet-lt");
    let _tracker = clients::our_tracker(&ns, TRACKER_IP, &work.path().join("dstate"));
    let _seed = clients::libtorrent(&ns, true, &f.torrent, &f.dir, THEIR_IP, &[]);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn={NAME}&tr={}",
        f.info_hash,
        ANNOUNCE.replace(':', "%3A").replace('/', "%2F")
    );
    we_download(&ns, &magnet, work.path(), "libtorrent");
}

#[test]
fn we_download_from_transmission_by_magnet_with_peer_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = fixture();
    let ns = Netns::new("mag-tr", &[OUR_IP, THEIR_IP]);
    let work = temp_dir("magnet-tr");
    let t = Transmission::start(
        &ns,
        THEIR_IP,
        &work.path().join("tr-config"),
        &work.path().join("tr-dl"),
    );
    t.add(&f.torrent, &f.dir);
    assert!(
        t.wait_done(Duration::from_secs(60)),
        "transmission did not verify its seed data:\n{}",
        t.info()
    );
    // No tracker: the peer comes from the link alone.
    let magnet = format!("magnet:?xt=urn:btih:{}&x.pe={THEIR_IP}:6881", f.info_hash);
    we_download(&ns, &magnet, work.path(), "transmission");
}

#[test]
fn libtorrent_downloads_from_our_seed_by_magnet() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = fixture();
    let ns = Netns::new("mag-seed", &[TRACKER_IP, OUR_IP, THEIR_IP]);
    let work = temp_dir("magnet-seed");
    let _tracker = clients::our_tracker(&ns, TRACKER_IP, &work.path().join("dstate"));
    let log = work.path().join("seed.log");
    let _seed = clients::ours(&ns, &f.torrent, &f.dir.join(NAME), OUR_IP, &[], &log);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        f.info_hash,
        ANNOUNCE.replace(':', "%3A").replace('/', "%2F")
    );
    let got = work.path().join("lt-got");
    std::fs::create_dir_all(&got).unwrap();
    let mut leecher = clients::libtorrent(&ns, false, Path::new(&magnet), &got, THEIR_IP, &[]);
    let status = leecher.wait_timeout(TRANSFER_TIMEOUT);
    assert!(
        matches!(status, Some(s) if s.success()),
        "libtorrent did not finish from our seed by magnet ({status:?}); our log:\n{}",
        tail(&log)
    );
    assert!(
        clients::same_tree(&got.join(NAME), &f.dir.join(NAME)),
        "libtorrent's copy differs"
    );
}
