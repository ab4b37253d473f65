#!/usr/bin/env bash
# Announces per second and p99 latency of `bitfountain track` against
# Debian's opentracker, measured in the same run with wrk on loopback, with
# keep-alive and with `Connection: close`; then the tracker's memory with
# 1,000,000 peers in 100,000 swarms.
#
#   benches/tracker_vs_opentracker.sh            # 10 s runs, 3 repetitions
#   DURATION=5s REPS=1 benches/tracker_vs_opentracker.sh
#
# Needs: wrk, opentracker, python3, curl; root (opentracker chroots into its
# folder and drops to `nobody`). Traffic stays on 127.0.0.1. Every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
HASHES=${HASHES:-10000}
PEERS=${PEERS:-100000}
RSS_PEERS=${RSS_PEERS:-1000000}
RSS_SWARMS=${RSS_SWARMS:-100000}
OUR_PORT=${OUR_PORT:-18969}
OT_PORT=${OT_PORT:-18970}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

for tool in wrk opentracker python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk opentracker curl)"; exit 1; }
done

cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/bitfountain
WORK=$(mktemp -d /tmp/bf-trackbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# 10,000 info-hashes: SHA-1 of their number, as opentracker's whitelist.
python3 - "$HASHES" > "$WORK/hashes.txt" <<'EOF'
import hashlib, sys
for i in range(int(sys.argv[1])):
    print(hashlib.sha1(str(i).encode()).hexdigest())
EOF
mkdir -p "$WORK/ot"
cp "$WORK/hashes.txt" "$WORK/ot/whitelist.txt"
chmod 755 "$WORK" "$WORK/ot"; chmod 644 "$WORK/ot/whitelist.txt"

wait_port() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1"; exit 1
}

start_ours() {
  # The per-address rate limit is on (as in production) but set far above
  # what one benchmark address sends; the access log is written (to
  # /dev/null), so its cost is included.
  "$BIN" track --kenosis 0 --bind 127.0.0.1 --port "$OUR_PORT" --rate-limit 100000000 \
    --rate-burst 100000000 --max-connections-per-ip 4096 >/dev/null 2>"$WORK/ours.err" &
  OURS=$!; PIDS+=("$OURS")
  wait_port "$OUR_PORT"
}
start_ours
opentracker -i 127.0.0.1 -p "$OT_PORT" -P "$OT_PORT" -d "$WORK/ot" -u nobody \
  -w whitelist.txt >"$WORK/ot.log" 2>&1 &
OT=$!; PIDS+=("$OT")
sleep 0.5
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$OT_PORT/announce" 2>/dev/null && break; sleep 0.1
done

# Both must answer a whitelisted announce with peers, not a failure.
H1=$(head -1 "$WORK/hashes.txt" | sed 's/../%&/g')
Q="info_hash=$H1&peer_id=-BF0001-check0000000&port=7000&uploaded=0&downloaded=0&left=0&compact=1"
for port in "$OUR_PORT" "$OT_PORT"; do
  body=$(curl -s "http://127.0.0.1:$port/announce?$Q" | tr -d '\000')
  case "$body" in *failure*|"") echo "port $port refused the check announce: $body"; exit 1;; esac
done

export BF_HASHES="$WORK/hashes.txt" BF_PEERS="$PEERS"
run_wrk() { # url extra-args... -> "req/s p99_ms non2xx"
  local url=$1; shift
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" -s benches/tracker/announce.lua "$url")
  local rps p99 unit bad
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  read -r p99 unit < <(awk '$1=="99%" {v=$2; u=v; gsub(/[0-9.]/,"",u); gsub(/[a-z]/,"",v); print v, u}' <<<"$out")
  case $unit in us) p99=$(awk -v v="$p99" 'BEGIN{printf "%.2f", v/1000}');; s) p99=$(awk -v v="$p99" 'BEGIN{printf "%.2f", v*1000}');; esac
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
  echo "$rps $p99 $bad"
}

# Warm-up: fill both with the 100,000 peers.
run_wrk "http://127.0.0.1:$OUR_PORT/" >/dev/null
run_wrk "http://127.0.0.1:$OT_PORT/" >/dev/null

declare -A RPS P99
for mode in keepalive close; do
  extra=(); [ "$mode" = close ] && extra=(-H "Connection: close")
  for rep in $(seq "$REPS"); do
    # Alternate the order so neither always runs on a cooler machine.
    order=(ours ot); [ $((rep % 2)) = 0 ] && order=(ot ours)
    for who in "${order[@]}"; do
      port=$OUR_PORT; [ "$who" = ot ] && port=$OT_PORT
      read -r rps p99 bad < <(run_wrk "http://127.0.0.1:$port/" "${extra[@]}")
      echo "$mode rep $rep $who: $rps req/s, p99 $p99 ms, non-2xx $bad" >&2
      RPS[$mode.$who]+="$rps "; P99[$mode.$who]+="$p99 "
    done
  done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "| connection | tracker | announces/s (median of $REPS × $DURATION) | p99 latency ms | ratio |"
echo "|---|---|---|---|---|"
for mode in keepalive close; do
  ours=$(median "${RPS[$mode.ours]}"); ot=$(median "${RPS[$mode.ot]}")
  ratio=$(awk -v a="$ours" -v b="$ot" 'BEGIN{printf "%.2f", a/b}')
  label=$mode; [ "$mode" = keepalive ] && label="keep-alive"; [ "$mode" = close ] && label="Connection: close"
  echo "| $label | bitfountain track | ${ours%.*} | $(median "${P99[$mode.ours]}") | **${ratio}×** |"
  echo "| $label | opentracker | ${ot%.*} | $(median "${P99[$mode.ot]}") | 1 |"
done

# Memory with a million peers: a fresh tracker, loaded until /stats agrees.
kill -INT "$OURS" "$OT" 2>/dev/null || true; wait "$OURS" "$OT" 2>/dev/null || true
start_ours
export BF_PEERS="$RSS_PEERS" BF_SWARMS="$RSS_SWARMS" BF_THREADS="$THREADS"
# The loader stops each wrk thread after its share; wrk itself runs until
# we see every peer in /stats (bounded by 300 s), then is stopped.
stat() { curl -s "http://127.0.0.1:$OUR_PORT/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
wrk -t"$THREADS" -c"$CONNS" -d300s -s benches/tracker/load.lua "http://127.0.0.1:$OUR_PORT/" >/dev/null &
LOADER=$!; PIDS+=("$LOADER")
started=$(date +%s.%N)
peers=0
for _ in $(seq 300); do
  sleep 1
  peers=$(stat peers)
  [ "$peers" -ge "$RSS_PEERS" ] && break
done
loaded=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN{printf "%.0f", e-s}')
kill -INT "$LOADER" 2>/dev/null || true; wait "$LOADER" 2>/dev/null || true
swarms=$(stat swarms)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$OURS/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$OURS/status")
echo
echo "| peers | swarms | loaded in | VmRSS MiB | VmHWM MiB | RSS bytes per peer |"
echo "|---|---|---|---|---|---|"
echo "| $peers | $swarms | ${loaded} s | $((rss / 1024)) | $((hwm / 1024)) | $((rss * 1024 / peers)) |"
