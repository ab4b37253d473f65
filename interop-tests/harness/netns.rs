//! Network namespaces created by a test: each party gets its own address in
//! 198.18.0.0/15 on the namespace's loopback (Transmission refuses 127.x
//! peers and keeps one peer per address). Dropping the guard kills every
//! process left inside and deletes the namespace.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace with loopback up and the given addresses on it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str, addrs: &[&str]) -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bf-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .map(|s| s.success())
                .unwrap_or(false),
            "cannot create network namespace {name}: these tests need root and iproute2"
        );
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        for addr in addrs {
            ns.ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip -n {} {args:?} failed", self.name);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a shell snippet inside the namespace (for nft rules and the like).
    pub fn sh(&self, script: &str) -> bool {
        self.command("sh")
            .args(["-c", script])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
