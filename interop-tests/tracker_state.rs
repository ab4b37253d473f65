//! The `--dfile`: swarms survive SIGTERM and a restart; a truncated or
//! garbage dfile is set aside with a warning and the tracker starts empty.

mod harness;
mod tracker_common;

use std::collections::HashSet;

use harness::*;
use tracker_common::*;

#[test]
fn restart_keeps_a_thousand_peers_in_a_hundred_swarms() {
    let dir = temp_dir("track-restart");
    let dfile = dir.path().join("dstate");
    let args = ["--dfile", dfile.to_str().unwrap(), "--rate-limit", "0"];
    let t = TrackerProc::start(dir.path(), "first", &args);
    for peer in 0..1000u32 {
        let swarm = peer % 100;
        // Every tenth peer is a seed; peers 0..100 also completed.
        let left = if peer % 10 == 0 { 0 } else { 1000 };
        let event = if peer < 100 { "&event=completed" } else { "" };
        t.announce(&query(swarm, peer, 10_000 + peer as u16, left, event));
    }
    let hashes: Vec<_> = (0..100).map(hash).collect();
    let before = t.scrape(&hashes);
    assert!(before.iter().all(|(_, s)| s.complete + s.incomplete == 10));
    assert_eq!(t.stats()["peers"], 1000);
    let err = t.terminate();
    assert!(err.contains("saved the swarms"), "{err}");

    let t = TrackerProc::start(dir.path(), "second", &args);
    assert!(
        t.stderr_text()
            .contains("restored 100 swarms and 1000 live peers"),
        "{}",
        t.stderr_text()
    );
    assert_eq!(t.scrape(&hashes), before);
    let stats = t.stats();
    assert_eq!(
        (stats["swarms"].as_u64(), stats["peers"].as_u64()),
        (Some(100), Some(1000))
    );
    assert_eq!(stats["completed"], 100);
    // A newcomer to swarm 7 is handed the ten peers announced before.
    let r = t.announce(&query(7, 5000, 20_000, 1, "&numwant=200"));
    let ports: HashSet<u16> = r.peers.iter().map(|p| p.addr.port()).collect();
    let expected: HashSet<u16> = (0..1000u32)
        .filter(|p| p % 100 == 7)
        .map(|p| 10_000 + p as u16)
        .collect();
    assert_eq!(ports, expected);
    t.terminate();
}

#[test]
fn corrupt_dfiles_are_set_aside() {
    let dir = temp_dir("track-corrupt");
    let dfile = dir.path().join("dstate");
    let args = ["--dfile", dfile.to_str().unwrap(), "--rate-limit", "0"];
    // A good file to damage.
    let t = TrackerProc::start(dir.path(), "seed", &args);
    for peer in 0..50 {
        t.announce(&query(peer % 5, peer, 10_000 + peer as u16, 1, ""));
    }
    t.terminate();
    let good = std::fs::read(&dfile).unwrap();
    assert!(good.len() > 50 * 31);

    let mut garbage = Vec::new();
    write_random_file(&dir.path().join("noise"), 4096, 9);
    garbage.extend(std::fs::read(dir.path().join("noise")).unwrap());
    for (n, (what, bytes)) in [
        ("truncated", good[..good.len() - 17].to_vec()),
        ("garbage", garbage),
        ("empty", Vec::new()),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&dfile, &bytes).unwrap();
        let t = TrackerProc::start(dir.path(), what, &args);
        let err = t.stderr_text();
        assert!(
            err.contains("WARN") && err.contains("is unusable"),
            "{what}: {err}"
        );
        assert_eq!(t.stats()["swarms"], 0, "{what}");
        // Still a working tracker, writing a fresh dfile.
        t.announce(&query(1, 1, 6001, 0, ""));
        t.terminate();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("dstate.corrupt-"))
            .collect();
        assert_eq!(aside.len(), n + 1, "{what}: {aside:?}");
        assert!(
            aside.iter().any(|p| std::fs::read(p).unwrap() == bytes),
            "{what}: bad file not kept"
        );
        let t = TrackerProc::start(dir.path(), &format!("{what}-after"), &args);
        assert_eq!(
            t.stats()["peers"],
            1,
            "{what}: the fresh dfile was not written"
        );
        t.terminate();
    }
}
