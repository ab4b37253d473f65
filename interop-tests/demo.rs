//! `bitfountain demo` runs a swarm on loopback and exits 0 with every copy
//! verified, as the README's first command promises.

mod harness;

use harness::*;

#[test]
fn demo_swarm_completes_and_verifies_every_copy() {
    let dir = temp_dir("demo");
    let out = run_ok(
        bitfountain()
            .args([
                "demo",
                "--size",
                "24M",
                "--leechers",
                "3",
                "--timeout",
                "120",
                "--dir",
            ])
            .arg(dir.path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("every copy is identical to the original"),
        "{text}"
    );
    let verified = text.lines().filter(|l| l.ends_with("verified")).count();
    assert_eq!(verified, 4, "seed and 3 leechers verified:\n{text}");
    let original = std::fs::read(dir.path().join("demo.bin")).unwrap();
    for name in ["coded-1", "plain-2", "coded-3"] {
        let copy = dir.path().join(name).join("demo.bin");
        assert!(std::fs::read(copy).unwrap() == original, "{name} differs");
        // Row: name kind time rate(2) plain(2) coded(2) uploaded(2) copy.
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .split_whitespace()
            .collect();
        let got_coded = format!("{} {}", row[7], row[8]);
        if name.starts_with("coded") {
            assert_eq!(row[1], "coded");
            assert_ne!(got_coded, "0 B", "{name} received no symbols:\n{text}");
        } else {
            assert_eq!(row[1], "plain");
            assert_eq!(got_coded, "0 B", "{name} is plain:\n{text}");
        }
    }
}
