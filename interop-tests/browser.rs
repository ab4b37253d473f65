//! The tracker's index page and `/stats` opened in a real browser (Debian's
//! headless Chromium): the rendered DOM must carry the swarms, their names
//! (non-ASCII and HTML-special characters intact, so the charset and the
//! escaping are right) and the totals; `/stats` must render as JSON text
//! that parses. A screenshot of the page is kept under
//! `target/tmp/artifacts/` for people to look at.

mod harness;
mod tracker_common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use tracker_common::*;
use wire::tracker::percent_encode;

/// Chromium in its own process group: it forks renderer and GPU helpers,
/// and dropping the guard kills the whole group, so a hung browser leaves
/// nothing behind.
struct Browser {
    child: std::process::Child,
}

impl Browser {
    /// Runs headless Chromium with `args` and returns its stdout, failing
    /// the test after `timeout`.
    fn run(profile: &Path, args: &[&str], timeout: Duration) -> String {
        let out = profile.with_extension("stdout");
        let err = profile.with_extension("stderr");
        let child = Command::new("chromium")
            .args([
                "--headless",
                // Root in a container: no user namespaces for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        let mut browser = Browser { child };
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = browser.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "chromium {args:?} did not finish within {timeout:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "chromium {args:?} failed ({status}):\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::fs::read_to_string(&out).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals a process group this test created; no memory is involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The text of a DOM dump with tags removed and whitespace collapsed, so
/// assertions read like what a person sees.
fn visible_text(dom: &str) -> String {
    let body = dom.split("<body").nth(1).unwrap_or(dom);
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Makes a torrent of a small file named `name` in `torrents/`; returns
/// its info-hash.
fn publish(dir: &Path, name: &str, seed: u64) -> wire::InfoHash {
    let data = dir.join("data").join(name);
    write_random_file(&data, 50_000 + seed as usize, seed);
    let torrent = dir.join("torrents").join(format!("t{seed}.torrent"));
    run_ok(
        bitfountain()
            .args(["make", "-o"])
            .arg(&torrent)
            .arg(&data)
            .arg("http://127.0.0.1:1/announce"),
    );
    let meta =
        wire::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap(), &Default::default()).unwrap();
    meta.info.info_hash
}

#[test]
fn index_page_and_stats_render_in_chromium() {
    install_if_missing("chromium", "chromium");
    let dir = temp_dir("browser");
    std::fs::create_dir_all(dir.path().join("torrents")).unwrap();
    let names = ["Grüße aus Köln.mkv", "<b>not bold<b> & co.iso", "plain.txt"];
    let hashes: Vec<_> = names
        .iter()
        .zip(1..)
        .map(|(n, s)| publish(dir.path(), n, s))
        .collect();
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &[
            "--rate-limit",
            "0",
            "--allowed-dir",
            dir.path().join("torrents").to_str().unwrap(),
        ],
    );
    // Swarm 0: two seeds and a leecher; swarm 1: one leecher that then
    // completes; swarm 2: nobody (published only).
    let announce = |h: &wire::InfoHash, peer: u32, port: u16, left: u64, extra: &str| {
        t.announce(&format!(
            "info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
            percent_encode(&h.0),
            percent_encode(&peer_id(peer)),
        ))
    };
    announce(&hashes[0], 1, 7001, 0, "&event=started");
    announce(&hashes[0], 2, 7002, 0, "&event=started");
    announce(&hashes[0], 3, 7003, 900, "&event=started");
    announce(&hashes[1], 4, 7004, 900, "&event=started");
    announce(&hashes[1], 4, 7004, 0, "&event=completed");

    let url = format!("http://{}/", t.addr);
    let profile = dir.path().join("chromium-profile");
    let dom = Browser::run(&profile, &["--dump-dom", &url], Duration::from_secs(90));
    let text = visible_text(&dom);
    assert!(
        dom.contains("<title>bitfountain tracker</title>"),
        "no title in:\n{dom}"
    );
    // The names as a person reads them: UTF-8 decoded (the page says its
    // charset), and markup in a name shown as text, never as markup.
    assert!(text.contains("Grüße aus Köln.mkv"), "{text}");
    assert!(text.contains("<b>not bold<b> & co.iso"), "{text}");
    assert!(!dom.contains("<b>not bold<b>"), "a name became markup");
    assert!(text.contains("plain.txt"), "{text}");
    // Rows: info-hash, name, seeds, leechers, completed, busiest first.
    let row0 = format!("{} Grüße aus Köln.mkv 2 1 0", hashes[0].to_hex());
    let row1 = format!("{} <b>not bold<b> & co.iso 1 0 1", hashes[1].to_hex());
    let row2 = format!("{} plain.txt 0 0 0", hashes[2].to_hex());
    for row in [&row0, &row1, &row2] {
        assert!(text.contains(row.as_str()), "missing row {row:?} in {text}");
    }
    assert!(text.find(&row0) < text.find(&row1) && text.find(&row1) < text.find(&row2));
    assert!(
        text.contains("2 swarms · 3 seeds · 1 leechers · 1 completed downloads"),
        "{text}"
    );
    assert!(text.contains("total 2 swarms 3 1 1"), "{text}");

    // /stats as the browser shows it: JSON text that parses.
    let stats_dom = Browser::run(
        &profile,
        &["--dump-dom", &format!("{url}stats")],
        Duration::from_secs(90),
    );
    let json_text = stats_dom
        .split_once("<pre")
        .and_then(|(_, rest)| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(json, _)| json.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("/stats did not render as text: {stats_dom}"));
    let stats: serde_json::Value = serde_json::from_str(&json_text)
        .unwrap_or_else(|e| panic!("/stats text is not JSON ({e}): {json_text}"));
    assert_eq!(stats["swarms"], 2);
    assert_eq!(stats["seeders"], 3);
    assert_eq!(stats["leechers"], 1);
    assert_eq!(stats["completed"], 1);

    // A screenshot for people; it must at least be a real, non-trivial PNG.
    let shot = artifact_dir().join("tracker-index.png");
    let _ = std::fs::remove_file(&shot);
    Browser::run(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,720",
            &url,
        ],
        Duration::from_secs(90),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1280x720 page compresses to a few KB; text and table rules
    // take far more.
    assert!(
        png.len() > 20_000,
        "screenshot looks blank ({} bytes)",
        png.len()
    );
    eprintln!("screenshot kept at {}", shot.display());
}
