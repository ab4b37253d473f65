//! CPU time of processes and threads from /proc.

/// User + system CPU seconds from a `/proc/.../stat` file.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; fields after the last ')'
    // are plain. utime and stime are fields 14 and 15.
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// CPU seconds of a whole process (all its threads).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_is_readable() {
        let s = super::cpu_seconds("/proc/self/stat");
        assert!(s.is_some_and(|s| s >= 0.0));
    }
}
