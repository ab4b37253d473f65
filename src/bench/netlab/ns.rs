//! Network namespaces and TUN devices.
//!
//! Namespaces are made and configured with `ip` (iproute2), the tool every
//! admin can use to inspect them while a bench runs. TUN devices and the
//! calibration's sockets are opened from a short-lived thread that has
//! joined the namespace with `setns`: a socket or TUN device belongs to the
//! namespace it was created in, and its file descriptor then works from any
//! thread of ours.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Every namespace the bench makes is called `bf-bench-<pid>-<node>`, so a
/// later run can tell stale ones (their pid is gone) from a concurrent run's.
pub const PREFIX: &str = "bf-bench-";

/// The TUN device's name inside every namespace.
pub const TUN_NAME: &str = "bf0";

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (iproute2 is needed)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).with_context(|| format!("cannot open {path}"))?;
            // SAFETY: setns only changes this thread's network namespace; the
            // fd is valid for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot enter network namespace {ns}"));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread inside namespace {ns} panicked"))?
    })
}

/// Opens a non-blocking TUN device (IP packets, no extra header) named
/// [`TUN_NAME`] inside the calling thread's namespace. The device lives as
/// long as the returned file.
pub fn open_tun() -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("cannot open /dev/net/tun")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(TUN_NAME.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("TUNSETIFF failed");
    }
    Ok(file)
}

/// Creates namespace `name` with loopback up, a TUN device holding `addr`
/// in 198.18.0.0/15 and a route to that subnet only (no default route, so
/// nothing a peer does can leave the lab).
pub fn create(name: &str, addr: std::net::Ipv4Addr) -> Result<File> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    let tun = in_netns(name, open_tun)?;
    let cidr = format!("{addr}/15");
    ip(&["-n", name, "addr", "add", &cidr, "dev", TUN_NAME])?;
    // The kernel's queue in front of our reader: deep enough that a briefly
    // busy forwarder does not drop (the emulated queue is ours).
    ip(&["-n", name, "link", "set", TUN_NAME, "txqueuelen", "4000"])?;
    ip(&["-n", name, "link", "set", TUN_NAME, "up"])?;
    Ok(tun)
}

/// Kills every process left in namespace `name`, then deletes it.
pub fn destroy(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    if let Err(e) = ip(&["netns", "del", name]) {
        tracing::warn!("{e:#}");
    }
}

/// Deletes namespaces left by bench runs whose process is gone (a crash or
/// kill -9), so names and addresses never clash. A live run's are kept.
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| {
            pid != std::process::id() && std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            tracing::info!("removing stale namespace {name}");
            destroy(name);
        }
    }
}
