#!/bin/sh
# Fuzzes every target (or those named) one after the other for SECS seconds
# each (default 600), at the lowest CPU priority, and appends one line per
# target to $OUT (default wire/fuzz/execs.log): target, seconds, executions,
# and whether it crashed. Work corpora and crash artifacts go to $WORK
# (default /tmp/bf-fuzz), seeded from the committed corpus, so the committed
# corpus is only changed by hand (after minimising).
#
#   wire/fuzz/run-each.sh                       # all targets, 10 min each
#   SECS=60 wire/fuzz/run-each.sh peer_conn     # one target, a minute
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=${SECS:-600}
WORK=${WORK:-/tmp/bf-fuzz}
OUT=${OUT:-$PWD/fuzz/execs.log}
TARGETS=${*:-$(cargo +nightly fuzz list)}
nice -n 19 cargo +nightly fuzz build -O || exit 1
BIN=fuzz/target/x86_64-unknown-linux-gnu/release
for t in $TARGETS; do
    mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
    log="$WORK/$t.log"
    nice -n 19 "$BIN/$t" "$WORK/corpus/$t" "fuzz/corpus/$t" \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$WORK/artifacts/$t/" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "$t secs=$SECS execs=${execs:-?} rc=$rc artifacts=$(ls "$WORK/artifacts/$t" | wc -l) $(date -u +%H:%M:%S)" >>"$OUT"
done
