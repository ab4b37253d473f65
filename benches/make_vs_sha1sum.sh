#!/usr/bin/env bash
# Benchmark: `bitfountain make` on a 1 GiB file against `sha1sum` of the same
# file, measured in the same run with hyperfine (data on tmpfs, page cache
# warm). Prints a markdown table with the speed ratio.
#
#   benches/make_vs_sha1sum.sh [SIZE_MIB]     (default 1024)
set -euo pipefail
size_mib=${1:-1024}
top=$(cd "$(dirname "$0")/.." && pwd)
command -v hyperfine >/dev/null || { echo "installing hyperfine"; apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --quiet --manifest-path "$top/Cargo.toml"
bin="$top/target/release/bitfountain"
work=$(mktemp -d /dev/shm/bf-make-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
head -c $((size_mib << 20)) /dev/urandom > "$work/data.bin"
hyperfine --style none --warmup 1 --runs 7 --export-json "$work/result.json" \
  -n sha1sum "sha1sum $work/data.bin" \
  -n "bitfountain make" "$bin make $work/data.bin http://tracker.invalid/announce -o $work/out.torrent" >/dev/null
python3 - "$work/result.json" "$size_mib" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
mib = int(sys.argv[2])
s, m = r["sha1sum"], r["bitfountain make"]
print(f"| command | median s | MiB/s |\n|---|---|---|")
for name, x in (("sha1sum", s), ("bitfountain make", m)):
    print(f"| {name} | {x['median']:.3f} | {mib / x['median']:.0f} |")
print(f"\nmake speed / sha1sum speed = {s['median'] / m['median']:.2f}x ({mib} MiB, {__import__('os').cpu_count()} cores)")
PY
