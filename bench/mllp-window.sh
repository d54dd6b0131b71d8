#!/bin/bash
# Delivery to an MLLP destination, one message at a time against a window of them in flight.
# A backlog is built while the destination is down (ingested with `wyvern bench --to`), then
# the destination — the bench's echo server, which answers each frame with an AA at once —
# comes up, and the drain is timed from the first delivery to the last, read from /metrics.
# Loopback has almost no round trip, so this is the smallest gain a window gives: over a
# network every ACK's round trip is saved N−1 times in N.
#
# usage: bench/mllp-window.sh [BIN] [MESSAGES_PER_SCENARIO]   (runs window 1, 8, 1, 8)
set -euo pipefail
BIN=${1:-target/release/wyvern}
N=${2:-25000}
BIN=$(realpath "$BIN")
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
cat > "$DIR/wyvern.yaml" <<EOY
version: 1
store: { path: store, durability: fsync }
http: { listen: 127.0.0.1:27611 }
EOY
metric() {
  curl -s 127.0.0.1:27611/metrics | awk -v m="$1" 'index($0, m) == 1 { print $2 }'
}
for W in 1 8 1 8; do
  rm -rf "$DIR/store"
  cat > "$DIR/route.yaml" <<EOR
version: 1
route: mw
source: { mllp: { listen: 127.0.0.1:27610 } }
destinations:
  - name: out
    mllp: { connect: "127.0.0.1:27600", window: $W }
order_by: patient
EOR
  "$BIN" --log warn run --config "$DIR" > "$DIR/engine.log" 2>&1 &
  ENG=$!
  sleep 1.5
  "$BIN" --log warn bench --to 127.0.0.1:27610 --messages "$N" --rounds 1 > "$DIR/bench.txt" 2>&1
  ACCEPTED=$(metric 'wyvern_messages_total{route="mw",outcome="accepted"}')
  "$BIN" --log warn bench-server --mode echo --listen 127.0.0.1:27600 > /dev/null 2>&1 &
  ECHO=$!
  DELIVERED='wyvern_deliveries_total{route="mw",destination="out",outcome="delivered"}'
  # Timed from the first delivery: the worker's retry of the first message comes when it comes.
  until [ "$(metric "$DELIVERED")" -gt 0 ] 2>/dev/null; do sleep 0.02; done
  START=$(date +%s.%N)
  until [ "$(metric "$DELIVERED")" = "$ACCEPTED" ]; do sleep 0.02; done
  END=$(date +%s.%N)
  echo "window $W: $ACCEPTED delivered in $(echo "$END - $START" | bc) s, $(echo "$ACCEPTED / ($END - $START)" | bc) msgs/s"
  kill "$ENG" "$ECHO"; wait "$ENG" "$ECHO" 2>/dev/null || true
done
