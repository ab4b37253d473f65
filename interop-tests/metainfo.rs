//! Metainfo interop: torrents made by `bitfountain make` are read the same
//! way by transmission-show and python3-libtorrent; torrents made by
//! mktorrent are read by `bitfountain show` with libtorrent's info-hash.

mod harness;

use std::path::Path;

use harness::*;

const LIBTORRENT_INFO: &str = r#"
import json, sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print(json.dumps({
    "info_hash": str(ti.info_hashes().v1),
    "name": ti.name(),
    "total_size": ti.total_size(),
    "piece_length": ti.piece_length(),
    "num_pieces": ti.num_pieces(),
    "files": [[fs.file_path(i), fs.file_size(i)] for i in range(fs.num_files())],
    "trackers": [t.url for t in ti.trackers()],
}))
"#;

fn show_json(torrent: &Path) -> serde_json::Value {
    let out = stdout_of(bitfountain().args(["show", "--json"]).arg(torrent));
    serde_json::from_str(&out).unwrap()
}

/// Files as libtorrent lists them: `name/path` for multi-file torrents.
fn our_files(show: &serde_json::Value) -> Vec<(String, u64)> {
    let single = show["single_file"].as_bool().unwrap();
    let name = show["name"].as_str().unwrap();
    show["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let full = if single {
                path.to_owned()
            } else {
                format!("{name}/{path}")
            };
            (full, f["length"].as_u64().unwrap())
        })
        .collect()
}

fn libtorrent_files(lt: &serde_json::Value) -> Vec<(String, u64)> {
    lt["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().to_owned(), f[1].as_u64().unwrap()))
        .collect()
}

fn transmission_hash(torrent: &Path) -> String {
    let out = stdout_of(std::process::Command::new("transmission-show").arg(torrent));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Hash: "))
        .unwrap_or_else(|| panic!("transmission-show printed no hash:\n{out}"))
        .trim()
        .to_owned()
}

fn sample_tree(root: &Path) {
    write_random_file(&root.join("album/disc 1/track01.flac"), 300_000, 1);
    write_random_file(&root.join("album/disc 1/track02.flac"), 123_457, 2);
    write_random_file(&root.join("album/disc 2/deep/er/track.flac"), 70_001, 3);
    write_random_file(&root.join("album/cover.jpg"), 5_000, 4);
    std::fs::write(root.join("album/empty.txt"), b"").unwrap();
    // Names the seeds' tools skip.
    write_random_file(&root.join("album/.DS_Store"), 10, 5);
    write_random_file(&root.join("album/CVS/Entries"), 10, 6);
    write_random_file(&root.join("album/Thumbs.db"), 10, 7);
}

#[test]
fn our_torrents_are_read_identically_by_transmission_and_libtorrent() {
    require("transmission-show");
    let dir = temp_dir("meta-ours");
    let root = dir.path();
    sample_tree(root);
    write_random_file(&root.join("single.iso"), 1_000_003, 9);

    for (path, extra, out) in [
        ("single.iso", vec!["--piece-size", "64K"], "single.iso"),
        (
            "album",
            vec![
                "-t",
                "http://backup.invalid/announce",
                "--comment",
                "interop",
            ],
            "album",
        ),
        // An outer code's `bf` dictionary inside `info`: legacy clients
        // must read the torrent all the same, with the same info-hash.
        (
            "single.iso",
            vec!["--piece-size", "16K", "--repair", "10"],
            "repair",
        ),
    ] {
        let torrent = root.join(format!("{out}.torrent"));
        run_ok(
            bitfountain()
                .arg("make")
                .arg(root.join(path))
                .arg("http://198.18.0.1:6969/announce")
                .args(&extra)
                .arg("-o")
                .arg(&torrent),
        );
        let ours = show_json(&torrent);
        assert_eq!(
            ours["repair_pieces"].as_u64().unwrap() > 0,
            out == "repair",
            "{out}: {ours}"
        );
        let lt = libtorrent_json(LIBTORRENT_INFO, &[torrent.to_str().unwrap()]);
        let hash = ours["info_hash"].as_str().unwrap();
        assert_eq!(
            lt["info_hash"].as_str().unwrap(),
            hash,
            "{path}: libtorrent disagrees"
        );
        assert_eq!(
            transmission_hash(&torrent),
            hash,
            "{path}: transmission disagrees"
        );
        assert_eq!(
            libtorrent_files(&lt),
            our_files(&ours),
            "{path}: file lists differ"
        );
        assert_eq!(lt["total_size"], ours["total_length"]);
        assert_eq!(lt["num_pieces"], ours["piece_count"]);
        assert_eq!(lt["trackers"][0], "http://198.18.0.1:6969/announce");
    }
    // The skipped names never made it in.
    let album = show_json(&root.join("album.torrent"));
    let files = our_files(&album);
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(files
        .iter()
        .all(|(p, _)| !p.contains("CVS") && !p.contains(".DS_Store") && !p.contains("Thumbs")));
}

#[test]
fn mktorrent_torrents_show_libtorrents_info_hash() {
    require("mktorrent");
    let dir = temp_dir("meta-mk");
    let root = dir.path();
    sample_tree(root);
    write_random_file(&root.join("single.bin"), 777_777, 11);
    for (path, piece_exp) in [("single.bin", "15"), ("album", "16")] {
        let torrent = root.join(format!("{path}.mk.torrent"));
        run_ok(
            std::process::Command::new("mktorrent")
                .args(["-a", "http://t.invalid/announce", "-l", piece_exp, "-o"])
                .arg(&torrent)
                .arg(root.join(path)),
        );
        let ours = show_json(&torrent);
        let lt = libtorrent_json(LIBTORRENT_INFO, &[torrent.to_str().unwrap()]);
        assert_eq!(ours["info_hash"], lt["info_hash"], "{path}");
        assert_eq!(our_files(&ours), libtorrent_files(&lt), "{path}");
        // The plain-text output carries the same hash.
        let text = stdout_of(bitfountain().arg("show").arg(&torrent));
        assert!(text.contains(lt["info_hash"].as_str().unwrap()), "{text}");
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure_code() {
    let dir = temp_dir("meta-bad");
    let root = dir.path();
    let garbage = root.join("garbage.torrent");
    std::fs::write(&garbage, b"d4:infod4:name3:abce").unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["show".into(), root.join("missing.torrent").into()],
            "cannot read",
        ),
        (
            vec!["show".into(), garbage.clone().into()],
            "not a valid torrent",
        ),
        (
            vec![
                "make".into(),
                root.join("nothing-here").into(),
                "http://t/announce".into(),
            ],
            "cannot read",
        ),
        (
            vec!["make".into(), garbage.into(), "ftp://t/announce".into()],
            "must start with http",
        ),
    ];
    for (args, expected) in cases {
        let out = bitfountain().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: more than one line: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}
