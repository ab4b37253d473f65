#!/usr/bin/env bash
# Runs every test of bitfountain, installing what the tests need first.
#
# The interop tests drive real legacy clients from Debian's packages; a
# missing client is a failure, not a skip, so this script installs them.
# Needs root (or sudo) for apt and for the network-namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(transmission-cli transmission-daemon aria2 python3-libtorrent opentracker
          mktorrent wrk dnsutils iproute2 nftables hyperfine chromium fuse3 tmux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# One build from a clean checkout: incremental caches would only cost disk.
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
