#!/usr/bin/env python3
"""One seed -> one leecher throughput: bitfountain against libtorrent,
aria2 and Transmission, measured in the same run.

    sudo benches/transfer_bench.py [--size-mib 1024] [--runs 3] [--pairs all]
    sudo benches/transfer_bench.py --coded    # our plain TCP vs coded QUIC vs coded TCP

A 1 GiB random file with 1 MiB pieces lives on tmpfs. Every pair runs in a
network namespace the script creates (Transmission refuses 127.x peers),
each party on its own 198.18.0.x address, with our tracker. uTP is off
everywhere (we speak TCP). Throughput = file size / time from starting the
leecher until it reports the download complete (process exit, or
Transmission's RPC saying 100%), so startup counts for everybody. Peak RSS
is the leecher's maximum resident set (wait4). Prints a markdown table.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(TOP, "target", "release", "bitfountain")
LT = os.path.join(TOP, "interop-tests", "harness", "lt_client.py")
NS = f"bf-xfer-{os.getpid()}"
TRACKER, SEED, LEECH = "198.18.0.1", "198.18.0.2", "198.18.0.3"
# Our leecher's variants: plain BitTorrent over TCP, and coded transfer
# with our seed (which serves both) over QUIC datagrams or the TCP link.
OUR_LEECHERS = {
    "bitfountain": ["--coded", "off"],
    "bf-coded-quic": ["--coded", "only", "--coded-transport", "quic"],
    "bf-coded-tcp": ["--coded", "only", "--coded-transport", "tcp"],
}


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def in_ns(*args):
    return ["ip", "netns", "exec", NS, *args]


def spawn(args, **kw):
    return subprocess.Popen(in_ns(*args), stdin=subprocess.DEVNULL, **kw)


def kill(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()


def wait_port(ip, port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        ok = subprocess.run(in_ns("bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"),
                            stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {ip}:{port}")


class Transmission:
    def __init__(self, work, ip, download_dir):
        self.cfg = os.path.join(work, f"tr-{ip}")
        os.makedirs(self.cfg, exist_ok=True)
        settings = {
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
            "port-forwarding-enabled": False, "peer-port": 6881, "bind-address-ipv4": ip,
            "rpc-enabled": True, "rpc-port": 9091, "rpc-bind-address": ip,
            "rpc-authentication-required": False, "rpc-whitelist-enabled": False,
            "rpc-host-whitelist-enabled": False, "download-dir": download_dir,
            "incomplete-dir-enabled": False, "start-added-torrents": True, "encryption": 0,
            "ratio-limit-enabled": False, "message-level": 1, "cache-size-mb": 64,
            "peer-limit-per-torrent": 60,
        }
        json.dump(settings, open(os.path.join(self.cfg, "settings.json"), "w"))
        self.ip = ip
        self.proc = spawn(["transmission-daemon", "-f", "-g", self.cfg],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ip, 9091)

    def remote(self, *args):
        return subprocess.run(in_ns("transmission-remote", f"{self.ip}:9091", *args),
                              capture_output=True, text=True).stdout

    def add(self, torrent, directory):
        self.remote("-a", torrent, "-w", directory)

    def done(self):
        for line in self.remote("-t", "1", "-i").splitlines():
            if "Percent Done:" in line:
                return line.split(":")[1].strip() == "100%"
        return False

    def stop(self):
        kill(self.proc)


def start_seed(kind, work, data_dir, torrent):
    if kind == "bitfountain":
        return spawn([BIN, "get", torrent, "--saveas", os.path.join(data_dir, "data.bin"),
                      "--bind", SEED, "--minport", "6881", "--maxport", "6881"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kind == "libtorrent":
        return spawn(["/usr/bin/python3", LT, "seed", torrent, data_dir, f"{SEED}:6881"],
                     stdout=subprocess.DEVNULL)
    if kind == "aria2":
        return spawn(["aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                      "--enable-peer-exchange=false", "--listen-port=6881", f"--interface={SEED}",
                      "--file-allocation=none", "--console-log-level=error", "--summary-interval=0",
                      "--bt-seed-unverified=true", "--seed-ratio=0.0", f"--dir={data_dir}", torrent],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kind == "transmission":
        t = Transmission(work, SEED, data_dir)
        t.add(torrent, data_dir)
        end = time.time() + 120
        while not t.done():
            if time.time() > end:
                raise RuntimeError("transmission did not verify its seed data")
            time.sleep(0.5)
        return t
    raise ValueError(kind)


def run_leecher(kind, work, torrent):
    """Returns (seconds, peak RSS in MiB or None)."""
    dest = os.path.join(work, "dl")
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    start = time.time()
    if kind == "transmission":
        t = Transmission(work, LEECH, dest)
        start = time.time()
        t.add(torrent, dest)
        while not t.done():
            if time.time() - start > 600:
                t.stop()
                raise RuntimeError("transmission leecher timed out")
            time.sleep(0.2)
        elapsed = time.time() - start
        t.stop()
        return elapsed, None
    if kind in OUR_LEECHERS:
        args = [BIN, "get", torrent, "--saveas", os.path.join(dest, "data.bin"), "--bind", LEECH,
                "--minport", "6881", "--maxport", "6881", "--exit-on-complete", *OUR_LEECHERS[kind]]
    elif kind == "libtorrent":
        args = ["/usr/bin/python3", LT, "leech", torrent, dest, f"{LEECH}:6881"]
    elif kind == "aria2":
        args = ["aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--listen-port=6881", f"--interface={LEECH}",
                "--file-allocation=none", "--console-log-level=error", "--summary-interval=0",
                "--seed-time=0", f"--dir={dest}", torrent]
    else:
        raise ValueError(kind)
    p = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.time() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} leecher exited with {p.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--coded", action="store_true",
                    help="our seed -> our leecher: plain TCP, coded over QUIC, coded over TCP")
    ap.add_argument("--pairs", default="all",
                    help="comma-separated seed>leecher pairs, e.g. bitfountain>bitfountain,libtorrent>libtorrent")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    sh("cargo", "build", "--release", "--quiet", "--manifest-path", os.path.join(TOP, "Cargo.toml"))
    clients = ["bitfountain", "libtorrent", "aria2", "transmission"]
    pairs = ([("bitfountain", "bitfountain"), ("libtorrent", "libtorrent")]
             + [(c, "bitfountain") for c in clients[1:]] + [("bitfountain", c) for c in clients[1:]])
    if args.coded:
        pairs = [("bitfountain", k) for k in OUR_LEECHERS]
    if args.pairs != "all":
        pairs = [tuple(p.split(">")) for p in args.pairs.split(",")]

    work = tempfile.mkdtemp(prefix="bf-xfer-", dir="/dev/shm")
    sh("ip", "netns", "add", NS)
    procs = []
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        for ip in (TRACKER, SEED, LEECH):
            sh("ip", "-n", NS, "addr", "add", f"{ip}/32", "dev", "lo")
        data_dir = os.path.join(work, "src")
        os.makedirs(data_dir)
        data = os.path.join(data_dir, "data.bin")
        with open(data, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        torrent = os.path.join(work, "data.torrent")
        sh(BIN, "make", data, f"http://{TRACKER}:6969/announce", "--piece-size", "1M", "-o", torrent,
           stdout=subprocess.DEVNULL)
        tracker = spawn([BIN, "track", "--bind", TRACKER, "--port", "6969", "--interval", "30",
                         "--no-access-log", "--kenosis", "0"], stdout=subprocess.DEVNULL)
        procs.append(tracker)
        wait_port(TRACKER, 6969)
        results = {p: [] for p in pairs}
        for run in range(args.runs):
            for seed_kind, leech_kind in pairs:  # pairs alternate within each run
                seed = start_seed(seed_kind, work, data_dir, torrent)
                try:
                    time.sleep(1.0)
                    secs, rss = run_leecher(leech_kind, work, torrent)
                finally:
                    seed.stop() if isinstance(seed, Transmission) else kill(seed)
                    time.sleep(0.5)
                results[(seed_kind, leech_kind)].append((secs, rss))
                print(f"run {run + 1}: {seed_kind} -> {leech_kind}: {secs:.2f} s"
                      + (f", leecher peak RSS {rss:.0f} MiB" if rss else ""), file=sys.stderr, flush=True)
        size = args.size_mib
        ref_pair = ("bitfountain", "bitfountain") if args.coded else ("libtorrent", "libtorrent")
        ref = statistics.median(s for s, _ in results[ref_pair]) if ref_pair in results else None
        print(f"\n{size} MiB, 1 MiB pieces, tmpfs, one seed -> one leecher, median of {args.runs}\n")
        print(f"| seed -> leecher | median s | MiB/s | vs {ref_pair[0]} -> {ref_pair[1]} | leecher peak RSS MiB |")
        print("|---|---|---|---|---|")
        for (s_kind, l_kind), rows in results.items():
            secs = statistics.median(s for s, _ in rows)
            rss = [r for _, r in rows if r]
            ratio = f"{ref / secs:.2f}x" if ref else "-"
            print(f"| {s_kind} -> {l_kind} | {secs:.2f} | {size / secs:.0f} | {ratio} | "
                  f"{max(rss):.0f} |" if rss else f"| {s_kind} -> {l_kind} | {secs:.2f} | {size / secs:.0f} | {ratio} | - |")
    finally:
        for p in procs:
            kill(p)
        out = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", NS])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
