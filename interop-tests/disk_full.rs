//! Disk full: a download into a small tmpfs (mounted by the test; needs
//! root) stops with a clear "disk full" status, keeps seeding the pieces it
//! verified, and resumes and completes once space is freed.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::node::*;
use harness::*;

const SIZE: usize = 32 << 20;
/// The filesystem: 40 MiB, of which a ballast file takes 24 MiB, leaving
/// room for about half the download.
const FS_MIB: u64 = 40;
const BALLAST: usize = 24 << 20;

/// A size-limited tmpfs, unmounted on drop (even when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={mib}m,mode=0755"))
                .arg("bf-diskfull")
                .arg(at),
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn disk_full(v: &serde_json::Value) -> bool {
    v["phase"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("disk full"))
}

#[test]
fn disk_full_pauses_downloading_keeps_seeding_and_recovers() {
    let t0 = Instant::now();
    let s = setup_sized("diskfull", SIZE, &["--piece-size", "256K"]);
    let mnt = s.dir.path().join("small");
    let _fs = Tmpfs::mount(&mnt, FS_MIB);
    let ballast = mnt.join("ballast");
    write_random_file(&ballast, BALLAST, 3);

    let seed_port = free_port("127.0.0.2");
    let _seed = Reaped::spawn(
        "seed",
        get_cmd(&s.torrent, &s.data, "127.0.0.2", seed_port, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Our node, downloading into the small filesystem.
    let saveas = mnt.join("data.bin");
    let a_port = free_port("127.0.0.1");
    let log = s.dir.path().join("a.log");
    let mut a = Reaped::spawn(
        "downloader",
        get_cmd(
            &s.torrent,
            &saveas,
            "127.0.0.1",
            a_port,
            &["--peer".into(), format!("127.0.0.2:{seed_port}")],
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap()),
    );
    let a_rx = status_lines(&mut a.child);
    let full = wait_status(&a_rx, 60, "disk full status", disk_full);
    let paused_have = full["pieces_have"].as_u64().unwrap();
    let total = full["pieces_total"].as_u64().unwrap();
    eprintln!(
        "[{:?}] disk full with {paused_have} of {total} pieces: {}",
        t0.elapsed(),
        full["phase"]
    );
    assert!(paused_have > 0 && paused_have < total, "{full}");
    // Downloading has stopped: no piece is added while the disk is full
    // (retries every 5 s find it still full).
    std::thread::sleep(Duration::from_secs(6));
    let later = last_status(&a_rx);
    assert_eq!(
        later["pieces_have"].as_u64(),
        Some(paused_have),
        "pieces added on a full disk: {later}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("disk full: downloading paused, still seeding verified pieces"),
        "no clear disk-full message in the log:\n{log_text}"
    );

    // Seeding goes on: another leecher, given only our node, gets every
    // piece it verified.
    let b_save = s.dir.path().join("b.bin");
    let mut b = Reaped::spawn(
        "second leecher",
        get_cmd(
            &s.torrent,
            &b_save,
            "127.0.0.3",
            free_port("127.0.0.3"),
            &["--peer".into(), format!("127.0.0.1:{a_port}")],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    );
    let b_rx = status_lines(&mut b.child);
    let got = wait_status(&b_rx, 30, "second leecher gets the verified pieces", |v| {
        v["pieces_have"].as_u64().unwrap() >= paused_have
    });
    eprintln!(
        "[{:?}] second leecher has {} pieces from the paused node",
        t0.elapsed(),
        got["pieces_have"]
    );
    // The paused node still adds nothing (its next status line: one comes
    // a second, and the second leecher may have finished before it was due).
    let now = a_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("no status line from the paused node");
    assert_eq!(now["pieces_have"].as_u64(), Some(paused_have), "{now}");

    // Space comes back: the download resumes and completes.
    std::fs::remove_file(&ballast).unwrap();
    let done = wait_status(&a_rx, 60, "completion after space was freed", |v| {
        v["pieces_have"] == v["pieces_total"]
    });
    eprintln!("[{:?}] complete after space returned", t0.elapsed());
    assert_eq!(done["phase"], "seeding", "{done}");
    assert!(
        std::fs::read(&saveas).unwrap() == std::fs::read(&s.data).unwrap(),
        "the file differs"
    );
    // And the second leecher completes from our node alone.
    wait_status(&b_rx, 60, "second leecher completes", |v| {
        v["pieces_have"] == v["pieces_total"]
    });
    assert!(std::fs::read(&b_save).unwrap() == std::fs::read(&s.data).unwrap());
}
