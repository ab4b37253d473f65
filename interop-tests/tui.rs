//! `get -g`, the full-screen interface, driven in tmux like a person
//! would: the progress screen shows the torrent, its piece map and both
//! peers with their kind (our coded seed, a legacy libtorrent seed); `l`
//! shows log lines and `l` again returns; `q` quits and leaves the
//! terminal as it was (main screen, cooked mode with echo). The download
//! is rate-limited so the screens are seen mid-transfer. A capture of each
//! screen is kept under `target/tmp/artifacts/`.

mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::clients;
use harness::netns::Netns;
use harness::*;

const SEED_IP: &str = "198.18.0.2";
const LT_IP: &str = "198.18.0.3";
const UI_IP: &str = "198.18.0.4";

/// A tmux server on a private socket; dropping it kills the server and
/// everything in its panes.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16) -> Tmux {
        install_if_missing("tmux", "tmux");
        let tmux = Tmux {
            socket: format!("bf-tui-{}", std::process::id()),
        };
        let ok = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "ui", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .args(["bash", "--norc", "--noprofile"])
            .env("PS1", "prompt$ ")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot start tmux");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).stdin(Stdio::null());
        c
    }

    fn send(&self, keys: &[&str]) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "ui"])
            .args(keys)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "tmux send-keys {keys:?} failed");
    }

    fn query(&self, format: &str) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "ui", format])
            .output()
            .expect("tmux display-message runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "ui"])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `pred` holds; fails with the last screen.
    fn wait_screen(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

fn keep(name: &str, screen: &str) {
    let _ = std::fs::write(artifact_dir().join(name), screen);
}

#[test]
fn progress_screen_log_view_and_clean_quit_in_tmux() {
    let work = temp_dir("tui");
    let src = work.path().join("src");
    let name = "tui-data.bin";
    write_random_file(&src.join(name), 16 << 20, 5);
    let torrent = work.path().join("data.torrent");
    run_ok(
        bitfountain()
            .arg("make")
            .arg(src.join(name))
            .arg("http://198.18.0.1:6969/announce")
            .arg("-o")
            .arg(&torrent),
    );
    let ns = Netns::new("tui", &[SEED_IP, LT_IP, UI_IP]);
    let _seed = clients::ours(
        &ns,
        &torrent,
        &src.join(name),
        SEED_IP,
        // The leecher's download limit holds TCP reads, not coded QUIC
        // datagrams: our seed's upload limit paces those.
        &["--max_upload_rate", "400000"],
        &work.path().join("seed.log"),
    );
    let _lt = clients::libtorrent(&ns, true, &torrent, &src, LT_IP, &[]);
    clients::wait_for_port(&ns, SEED_IP, 6881);
    clients::wait_for_port(&ns, LT_IP, 6881);

    let tmux = Tmux::start(140, 45);
    tmux.wait_screen("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("prompt$")
    });
    assert_eq!(tmux.query("#{alternate_on}"), "0");
    let saveas = work.path().join("got").join(name);
    // At most ~0.8 MB/s from both seeds: 16 MiB take 20 s or more, long
    // enough to look at every screen mid-download.
    let command = format!(
        "ip netns exec {} {} get {} --saveas {} --bind {UI_IP} --peer {SEED_IP}:6881 \
         --peer {LT_IP}:6881 --max_download_rate 400000 -g",
        ns.name,
        env!("CARGO_BIN_EXE_bitfountain"),
        torrent.display(),
        saveas.display()
    );
    tmux.send(&[&command, "Enter"]);

    // The progress screen: torrent, gauge, piece map, both peers by kind.
    // (The command line itself names both peers, so look for table rows.)
    let row_of = |screen: &str, ip: &str| {
        screen
            .lines()
            .find(|l| l.contains(&format!("{ip}:6881 ")) && !l.contains("--peer"))
            .unwrap_or_default()
            .to_owned()
    };
    let progress = tmux.wait_screen(
        "both peers on the progress screen",
        Duration::from_secs(30),
        |s| !row_of(s, SEED_IP).is_empty() && !row_of(s, LT_IP).is_empty(),
    );
    assert_eq!(
        tmux.query("#{alternate_on}"),
        "1",
        "not on the alternate screen"
    );
    keep("tui-progress.txt", &progress);
    assert!(progress.contains(name), "{progress}");
    assert!(progress.contains("pieces"), "{progress}");
    assert!(progress.contains("ratio"), "{progress}");
    let row = |ip: &str| row_of(&progress, ip);
    assert!(
        row(SEED_IP).contains("coded"),
        "our seed not coded:\n{progress}"
    );
    assert!(
        row(LT_IP).contains("legacy"),
        "libtorrent not legacy:\n{progress}"
    );
    // Mid-download: the gauge shows a percentage below 100.
    assert!(
        progress.contains('%') && !progress.contains("100.0%"),
        "{progress}"
    );

    // `l`: the log view, with lines the session logged.
    tmux.send(&["l"]);
    let log = tmux.wait_screen("the log view", Duration::from_secs(10), |s| {
        s.contains(" log ") && s.contains("listening for peers")
    });
    keep("tui-log.txt", &log);
    assert!(
        !log.contains(&format!("{LT_IP}:6881 ")),
        "peer table still shown:\n{log}"
    );
    assert!(log.contains("INFO"), "{log}");

    // `l` again: back to progress.
    tmux.send(&["l"]);
    tmux.wait_screen("the progress view again", Duration::from_secs(10), |s| {
        s.contains(" pieces ") && s.contains(&format!("{SEED_IP}:6881"))
    });

    // `q`: quits, main screen back, terminal in cooked mode with echo.
    tmux.send(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while tmux.query("#{pane_current_command}") != "bash" {
        assert!(
            Instant::now() < deadline,
            "bitfountain did not quit on q:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        tmux.query("#{alternate_on}"),
        "0",
        "alternate screen left on"
    );
    assert_eq!(tmux.query("#{cursor_flag}"), "1", "cursor left hidden");
    let stty = work.path().join("stty.txt");
    tmux.send(&[&format!("stty -a > {}", stty.display()), "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let modes = loop {
        let text = std::fs::read_to_string(&stty).unwrap_or_default();
        if text.contains("icanon") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "stty did not run:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let flags: Vec<&str> = modes.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            flags.contains(&mode),
            "terminal left without {mode}:\n{modes}"
        );
    }
    let after = tmux.screen();
    keep("tui-after-quit.txt", &after);
    assert!(after.contains("prompt$"), "{after}");
    assert!(Path::new(&stty).exists());
}
