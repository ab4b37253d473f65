//! Plain BitTorrent against real legacy clients: libtorrent, Transmission
//! and aria2 each seed to us and download from us, for a 64 MiB single-file
//! torrent and a multi-file torrent with nested folders; then a four-party
//! swarm. Every party runs in the test's network namespace with its own
//! address; the single-file transfers go through opentracker, the others
//! through our own tracker.

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
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(180);

/// Interop tests run one at a time: two cores, real clients.
static SERIAL: Mutex<()> = Mutex::new(());

/// The two datasets, made once: a 64 MiB file and a nested folder.
struct Dataset {
    /// Folder holding the data under the torrent's name.
    dir: PathBuf,
    name: &'static str,
    torrent: PathBuf,
    info_hash: String,
}

struct Fixtures {
    _root: tempfile::TempDir,
    single: Dataset,
    multi: Dataset,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let root = temp_dir("plain-data");
        let src = root.path().join("src");
        write_random_file(&src.join("big.bin"), 64 << 20, 42);
        let album = src.join("album");
        write_random_file(&album.join("cd1/01 intro.flac"), 5_000_003, 1);
        write_random_file(&album.join("cd1/02 theme.flac"), 7_340_032, 2);
        write_random_file(&album.join("cd2/deeper/03 coda.flac"), 3_333_333, 3);
        write_random_file(&album.join("cover.jpg"), 70_000, 4);
        std::fs::write(album.join("empty.txt"), b"").unwrap();
        let make = |name: &'static str| {
            let torrent = root.path().join(format!("{name}.torrent"));
            run_ok(
                bitfountain()
                    .arg("make")
                    .arg(src.join(name))
                    .arg(ANNOUNCE)
                    .arg("-o")
                    .arg(&torrent),
            );
            let show = stdout_of(bitfountain().args(["show", "--json"]).arg(&torrent));
            let json: serde_json::Value = serde_json::from_str(&show).unwrap();
            Dataset {
                dir: src.clone(),
                name,
                torrent,
                info_hash: json["info_hash"].as_str().unwrap().to_owned(),
            }
        };
        let single = make("big.bin");
        let multi = make("album");
        Fixtures {
            _root: root,
            single,
            multi,
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum TrackerKind {
    Opentracker,
    Ours,
}

fn start_tracker(ns: &Netns, kind: TrackerKind, work: &Path, info_hash: &str) -> Reaped {
    match kind {
        TrackerKind::Opentracker => {
            clients::opentracker(ns, TRACKER_IP, &work.join("ot"), &[info_hash.to_owned()])
        }
        TrackerKind::Ours => clients::our_tracker(ns, TRACKER_IP, &work.join("dstate")),
    }
}

#[derive(Clone, Copy, Debug)]
enum Legacy {
    Libtorrent,
    Transmission,
    Aria2,
}

/// Starts the legacy client seeding the dataset from its source folder; the
/// returned guard stops it.
fn start_legacy_seed(
    ns: &Netns,
    who: Legacy,
    data: &Dataset,
    work: &Path,
) -> Box<dyn std::any::Any> {
    match who {
        Legacy::Libtorrent => Box::new(clients::libtorrent(
            ns,
            true,
            &data.torrent,
            &data.dir,
            THEIR_IP,
            &[],
        )),
        Legacy::Aria2 => Box::new(clients::aria2(ns, true, &data.torrent, &data.dir, THEIR_IP)),
        Legacy::Transmission => {
            let t = Transmission::start(ns, THEIR_IP, &work.join("tr-config"), &work.join("tr-dl"));
            t.add(&data.torrent, &data.dir);
            assert!(
                t.wait_done(Duration::from_secs(120)),
                "transmission did not verify its seed data:\n{}",
                t.info()
            );
            Box::new(t)
        }
    }
}

/// The legacy client seeds, we download.
fn legacy_seeds_we_download(who: Legacy, data: &Dataset, tracker: TrackerKind) {
    let ns = Netns::new("seed", &[TRACKER_IP, OUR_IP, THEIR_IP]);
    let work = temp_dir("plain-leech");
    let _tracker = start_tracker(&ns, tracker, work.path(), &data.info_hash);
    let _seed = start_legacy_seed(&ns, who, data, work.path());
    let saveas = work.path().join("got").join(data.name);
    let log = work.path().join("ours.log");
    let mut ours = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        OUR_IP,
        &["--exit-on-complete"],
        &log,
    );
    let status = ours.wait_timeout(TRANSFER_TIMEOUT);
    assert!(
        matches!(status, Some(s) if s.success()),
        "{who:?} -> us: our leecher did not finish ({status:?}); log:\n{}",
        tail(&log)
    );
    assert!(
        clients::same_tree(&saveas, &data.dir.join(data.name)),
        "{who:?} -> us: data differs"
    );
}

/// We seed, the legacy client downloads.
fn we_seed_legacy_downloads(who: Legacy, data: &Dataset, tracker: TrackerKind) {
    let ns = Netns::new("leech", &[TRACKER_IP, OUR_IP, THEIR_IP]);
    let work = temp_dir("plain-seed");
    let _tracker = start_tracker(&ns, tracker, work.path(), &data.info_hash);
    let log = work.path().join("ours.log");
    let _seed = clients::ours(
        &ns,
        &data.torrent,
        &data.dir.join(data.name),
        OUR_IP,
        &[],
        &log,
    );
    let dest = work.path().join("dl");
    std::fs::create_dir_all(&dest).unwrap();
    let done = match who {
        Legacy::Libtorrent => {
            let mut lt = clients::libtorrent(&ns, false, &data.torrent, &dest, THEIR_IP, &[]);
            matches!(lt.wait_timeout(TRANSFER_TIMEOUT), Some(s) if s.success())
        }
        Legacy::Aria2 => {
            let mut a = clients::aria2(&ns, false, &data.torrent, &dest, THEIR_IP);
            matches!(a.wait_timeout(TRANSFER_TIMEOUT), Some(s) if s.success())
        }
        Legacy::Transmission => {
            let t = Transmission::start(&ns, THEIR_IP, &work.path().join("tr-config"), &dest);
            t.add(&data.torrent, &dest);
            t.wait_done(TRANSFER_TIMEOUT)
        }
    };
    assert!(
        done,
        "us -> {who:?}: it did not finish; our log:\n{}",
        tail(&log)
    );
    let (got, source) = (dest.join(data.name), data.dir.join(data.name));
    let same = match who {
        // Transmission 3.00 never creates zero-length files.
        Legacy::Transmission => {
            clients::wait_identical_but_empty_files(&got, &source, Duration::from_secs(20))
        }
        _ => clients::wait_identical(&got, &source, Duration::from_secs(20)),
    };
    assert!(same, "us -> {who:?}: data differs");
}

fn both_directions(who: Legacy) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = fixtures();
    for (data, tracker) in [
        (&f.single, TrackerKind::Opentracker),
        (&f.multi, TrackerKind::Ours),
    ] {
        legacy_seeds_we_download(who, data, tracker);
        we_seed_legacy_downloads(who, data, tracker);
    }
}

#[test]
fn libtorrent_both_directions() {
    both_directions(Legacy::Libtorrent);
}

#[test]
fn transmission_both_directions() {
    both_directions(Legacy::Transmission);
}

#[test]
fn aria2_both_directions() {
    both_directions(Legacy::Aria2);
}

/// Our seed, our leecher, a libtorrent leecher and an aria2 leecher in one
/// swarm; everyone completes with identical bytes.
#[test]
fn four_party_swarm() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let f = fixtures();
    let data = &f.single;
    let (seed_ip, leech_ip, lt_ip, aria_ip) =
        ("198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5");
    let ns = Netns::new("swarm", &[TRACKER_IP, seed_ip, leech_ip, lt_ip, aria_ip]);
    let work = temp_dir("plain-swarm");
    let _tracker = start_tracker(&ns, TrackerKind::Ours, work.path(), &data.info_hash);
    let seed_log = work.path().join("seed.log");
    let _seed = clients::ours(
        &ns,
        &data.torrent,
        &data.dir.join(data.name),
        seed_ip,
        &[],
        &seed_log,
    );
    let lt_dir = work.path().join("lt");
    let aria_dir = work.path().join("aria");
    std::fs::create_dir_all(&lt_dir).unwrap();
    std::fs::create_dir_all(&aria_dir).unwrap();
    let mut lt = clients::libtorrent(&ns, false, &data.torrent, &lt_dir, lt_ip, &[]);
    let mut aria = clients::aria2(&ns, false, &data.torrent, &aria_dir, aria_ip);
    let leech_log = work.path().join("leech.log");
    let ours_saveas = work.path().join("ours").join(data.name);
    let mut ours = clients::ours(
        &ns,
        &data.torrent,
        &ours_saveas,
        leech_ip,
        &["--exit-on-complete"],
        &leech_log,
    );
    for (name, proc) in [
        ("our leecher", &mut ours),
        ("libtorrent", &mut lt),
        ("aria2", &mut aria),
    ] {
        let status = proc.wait_timeout(TRANSFER_TIMEOUT);
        assert!(
            matches!(status, Some(s) if s.success()),
            "{name} did not finish ({status:?}); seed log:\n{}",
            tail(&seed_log)
        );
    }
    let source = data.dir.join(data.name);
    for got in [
        ours_saveas,
        lt_dir.join(data.name),
        aria_dir.join(data.name),
    ] {
        assert!(
            clients::same_tree(&got, &source),
            "{} differs",
            got.display()
        );
    }
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default()
        + &std::fs::read_to_string(path.with_extension("stderr")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
