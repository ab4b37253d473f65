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
    for i in 1..=3 {
        let copy = dir.path().join(format!("leecher-{i}/demo.bin"));
        assert_eq!(
            std::fs::read(copy).unwrap(),
            std::fs::read(dir.path().join("demo.bin")).unwrap()
        );
    }
}
