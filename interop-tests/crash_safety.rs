//! Crash safety of storage: `get` killed with SIGKILL at 20 random moments
//! of a 256 MiB download and restarted each time. After every kill, every
//! piece the resume file marks done must hash correctly; after every
//! restart, every such piece is kept (not downloaded again); the final file
//! is byte-identical, and the seed sent little more than the file once.
//! Also: a truncated, empty, foreign or garbage resume file leads to a
//! re-check that keeps good data and never overwrites it.

mod harness;

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::node::*;
use harness::*;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use wire::{Bitfield, Info, Limits, Metainfo};

static SERIAL: Mutex<()> = Mutex::new(());

const SIZE: usize = 256 << 20;
const KILLS: usize = 20;
/// The seed's upload limit: slow enough that 20 kills fall inside the
/// download (1–4 s apart, about 9 MiB each on average, 180 MiB in all).
const SEED_RATE: u64 = 4 << 20;

/// The fields of our resume file the test needs (format in src/storage/resume.rs).
#[derive(Deserialize)]
struct Resume {
    #[serde(with = "serde_bytes")]
    info_hash: Vec<u8>,
    pieces: u32,
    #[serde(with = "serde_bytes")]
    have: Vec<u8>,
}

/// Pieces the resume file at `path` marks done (`None` when it does not
/// exist yet).
fn recorded(path: &Path, info: &Info) -> Option<Bitfield> {
    let bytes = std::fs::read(path).ok()?;
    let r: Resume = serde_bencode::from_bytes(&bytes)
        .unwrap_or_else(|e| panic!("resume file {} is unreadable: {e}", path.display()));
    assert_eq!(r.info_hash, info.info_hash.0.to_vec());
    assert_eq!(r.pieces, info.piece_count());
    Some(Bitfield::from_wire(&r.have, r.pieces).expect("resume bitfield"))
}

/// Indexes of pieces of `data` that match the torrent's hashes.
fn good_pieces(data: &[u8], info: &Info) -> Bitfield {
    let g = info.geometry;
    let mut good = Bitfield::new(g.piece_count());
    for i in 0..g.piece_count() {
        let start = g.piece_offset(i) as usize;
        let end = start + g.piece_size(i).unwrap() as usize;
        if let Some(piece) = data.get(start..end) {
            if <[u8; 20]>::from(Sha1::digest(piece)) == info.pieces[i as usize] {
                good.set(i);
            }
        }
    }
    good
}

/// The piece count `get` logs once it has checked existing data ("resumed
/// from … pieces=N rechecked=M" or "checked existing data (…) pieces=N").
fn checked_pieces(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<u64> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("checked existing data") || line.contains("resumed from") {
                let n = line
                    .split("pieces=")
                    .nth(1)
                    .and_then(|n| n.split_whitespace().next())
                    .and_then(|n| n.parse().ok());
                if let Some(n) = n {
                    let _ = tx.send(n);
                }
            }
        }
    });
    rx
}

/// xorshift64: the kill moments, reproducible from the printed seed.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_20_random_moments_loses_nothing_verified() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let s = setup_sized("crash", SIZE, &[]);
    let meta = Metainfo::from_bytes(&std::fs::read(&s.torrent).unwrap(), &Limits::DEFAULT).unwrap();
    let info = &meta.info;
    let seed_port = free_port("127.0.0.2");
    let mut seed = Reaped::spawn(
        "seed",
        get_cmd(
            &s.torrent,
            &s.data,
            "127.0.0.2",
            seed_port,
            &["--max_upload_rate".into(), SEED_RATE.to_string()],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    );
    let seed_rx = status_lines(&mut seed.child);
    let saveas = s.dir.path().join("out/data.bin");
    let resume = s.dir.path().join("out/data.bin.bf-resume");
    let peer = vec!["--peer".to_owned(), format!("127.0.0.2:{seed_port}")];
    let mut rng = t0.elapsed().as_nanos() as u64 | 1;
    eprintln!("kill moments from seed {rng}");
    let mut before: Option<Bitfield> = None;
    let mut restarts_checked = 0;
    for kill in 0..KILLS {
        let mut leech = Reaped::spawn(
            "leecher",
            get_cmd(
                &s.torrent,
                &saveas,
                "127.0.0.1",
                free_port("127.0.0.1"),
                &peer,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        );
        let checked = checked_pieces(&mut leech.child);
        let delay = Duration::from_millis(1000 + next_rand(&mut rng) % 3000);
        std::thread::sleep(delay);
        leech.child.kill().unwrap();
        leech.child.wait().unwrap();
        // Pieces recorded before this start must all be kept: the check's
        // log line counts them.
        if let (Ok(have), Some(prev)) = (checked.recv_timeout(Duration::from_secs(1)), &before) {
            assert!(
                have >= u64::from(prev.count()),
                "restart {kill}: {have} pieces after the check, {} were recorded",
                prev.count()
            );
            restarts_checked += 1;
        }
        // Every piece the resume data marks done hashes correctly.
        if let Some(done) = recorded(&resume, info) {
            let data = std::fs::read(&saveas).unwrap();
            let good = good_pieces(&data, info);
            let bad: Vec<u32> = done.iter_set().filter(|&p| !good.has(p)).collect();
            assert!(
                bad.is_empty(),
                "kill {kill} after {delay:?}: pieces marked done but wrong: {bad:?}"
            );
            assert!(
                done.count() < info.piece_count(),
                "kill {kill}: the download was already complete; the kills must fall inside it"
            );
            if let Some(prev) = &before {
                assert!(
                    prev.iter_set().all(|p| done.has(p)),
                    "kill {kill}: recorded pieces forgotten"
                );
            }
            eprintln!(
                "[{:?}] kill {kill} after {delay:?}: {} of {} pieces recorded, all hash right",
                t0.elapsed(),
                done.count(),
                info.piece_count()
            );
            before = Some(done);
        }
    }
    assert!(
        restarts_checked >= KILLS / 2,
        "only {restarts_checked} restarts checked their data before their kill"
    );
    // The last run finishes.
    let mut last = Reaped::spawn(
        "leecher, last run",
        get_cmd(
            &s.torrent,
            &saveas,
            "127.0.0.1",
            free_port("127.0.0.1"),
            &[peer, vec!["--exit-on-complete".into()]].concat(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    let status = last
        .wait_timeout(Duration::from_secs(120))
        .expect("last run finishes");
    assert!(status.success(), "last run: {status:?}");
    eprintln!("[{:?}] complete", t0.elapsed());
    assert!(
        std::fs::read(&saveas).unwrap() == std::fs::read(&s.data).unwrap(),
        "the downloaded file differs"
    );
    // Verified pieces were not sent again: over 21 runs the seed sent the
    // file once plus what was in flight at each kill (unfinished pieces,
    // socket buffers): at most 4 MiB per kill.
    // The seed's status line lags its counters by up to two seconds.
    let uploaded = wait_status(&seed_rx, 15, "the seed's upload of the whole file", |v| {
        v["uploaded"].as_u64().unwrap_or(0) >= SIZE as u64
    })["uploaded"]
        .as_u64()
        .unwrap();
    let bound = SIZE as u64 + KILLS as u64 * (4 << 20);
    eprintln!(
        "seed uploaded {uploaded} bytes for a {SIZE}-byte file ({:.2}×)",
        uploaded as f64 / SIZE as f64
    );
    assert!(
        uploaded >= SIZE as u64 && uploaded <= bound,
        "seed uploaded {uploaded} bytes (bound {bound})"
    );
}

/// Waits for `get` to write a resume file (its first flush, after 2 s).
fn wait_for_file(path: &Path) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::read(path).unwrap()
}

/// A damaged resume file of any kind: `get` re-checks, keeps every good
/// piece and changes no byte of the data.
#[test]
fn damaged_resume_files_lead_to_a_recheck_never_to_overwriting() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = setup_sized("resume-damage", 16 << 20, &["--piece-size", "256K"]);
    let other = setup_sized("resume-other", 1 << 20, &[]);
    let meta = Metainfo::from_bytes(&std::fs::read(&s.torrent).unwrap(), &Limits::DEFAULT).unwrap();
    let info = &meta.info;
    // Partial data: every third piece damaged, as after an interrupted run.
    let mut partial = std::fs::read(&s.data).unwrap();
    let g = info.geometry;
    for i in (0..g.piece_count()).step_by(3) {
        let at = g.piece_offset(i) as usize + 100;
        partial[at] ^= 0x55;
    }
    let good = good_pieces(&partial, info);
    assert_eq!(good.count(), g.piece_count() - g.piece_count().div_ceil(3));

    // A valid resume file of another torrent, to plant as a foreign one.
    let other_copy = other.dir.path().join("copy.bin");
    std::fs::copy(&other.data, &other_copy).unwrap();
    let seed_other = Reaped::spawn(
        "other torrent",
        get_cmd(
            &other.torrent,
            &other_copy,
            "127.0.0.1",
            free_port("127.0.0.1"),
            &[],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    let foreign = wait_for_file(&other.dir.path().join("copy.bin.bf-resume"));
    drop(seed_other);

    // A complete, valid resume file of this torrent, to truncate.
    let mut full_have = Bitfield::new(g.piece_count());
    for i in 0..g.piece_count() {
        full_have.set(i);
    }
    let valid = {
        let copy = s.dir.path().join("valid.bin");
        std::fs::copy(&s.data, &copy).unwrap();
        let seed = Reaped::spawn(
            "seed for a valid resume file",
            get_cmd(&s.torrent, &copy, "127.0.0.1", free_port("127.0.0.1"), &[])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let valid = wait_for_file(&s.dir.path().join("valid.bin.bf-resume"));
        drop(seed);
        valid
    };
    assert_eq!(
        recorded(&s.dir.path().join("valid.bin.bf-resume"), info),
        Some(full_have)
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero-length", Vec::new()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("truncated by one byte", valid[..valid.len() - 1].to_vec()),
        ("foreign", foreign),
        ("garbage", b"d7:versioni1e4:haveli1eee".to_vec()),
    ];
    for (name, content) in cases {
        let saveas = s.dir.path().join(format!("{}.bin", name.replace(' ', "-")));
        std::fs::write(&saveas, &partial).unwrap();
        let resume = s
            .dir
            .path()
            .join(format!("{}.bin.bf-resume", name.replace(' ', "-")));
        std::fs::write(&resume, &content).unwrap();
        // No peer: nothing can legitimately change the data.
        let mut run = Reaped::spawn(
            name,
            get_cmd(
                &s.torrent,
                &saveas,
                "127.0.0.1",
                free_port("127.0.0.1"),
                &[],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        );
        let rx = status_lines(&mut run.child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let v = loop {
            let v = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("status line");
            if v["phase"] != "checking" {
                break v;
            }
            assert!(Instant::now() < deadline, "{name}: still checking");
        };
        assert_eq!(
            v["pieces_have"].as_u64(),
            Some(u64::from(good.count())),
            "{name}: the re-check should find exactly the good pieces"
        );
        // Give it time to flush resume data, then stop it.
        std::thread::sleep(Duration::from_millis(2500));
        drop(run);
        assert!(
            std::fs::read(&saveas).unwrap() == partial,
            "{name}: the data was changed"
        );
        assert_eq!(
            recorded(&resume, info),
            Some(good.clone()),
            "{name}: the new resume file should record the good pieces"
        );
    }
}
