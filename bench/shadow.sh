#!/bin/bash
# Shadow replay's speed: N messages stored through a route with a real plugin (sent with
# `wyvern send --window 32`, while the route's destination is down so nothing leaves), then
# `wyvern replay --shadow` runs them all through a candidate identical to the live route, and
# through one with a field mapping changed (every message then differs, with its diff), while
# the engine keeps running. Same-run baseline: the ingest rate of the same messages.
#
# usage: bench/shadow.sh [BIN] [MESSAGES]     (plugins built first: wyvern plugin build plugins)
set -euo pipefail
BIN=$(realpath "${1:-target/release/wyvern}")
N=${2:-100000}
REPO=$(realpath "$(dirname "$0")/..")
PLUGIN="$REPO/plugins/dist/pid3-normalise.wasm"
[ -f "$PLUGIN" ] || { echo "build the plugins first: $BIN plugin build plugins" >&2; exit 1; }
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
cat > "$DIR/wyvern.yaml" <<EOY
version: 1
store: { path: store, durability: fsync }
EOY
route() {
  cat <<EOR
version: 1
route: sh
source: { mllp: { listen: 127.0.0.1:27620 } }
steps:
  - filter: { message_type: ADT }
  - wasm:
      plugin: $PLUGIN
      config: { invalid: keep, nhs_markers: [NHS, NH] }
  - set: { PV1-3.4: $1 }
destinations:
  - name: out
    mllp: { connect: "127.0.0.1:27621" }
order_by: patient
EOR
}
route RXX01 > "$DIR/sh.yaml"
mkdir "$DIR/same" "$DIR/changed"
route RXX01 > "$DIR/same/sh.yaml"
route RXX02 > "$DIR/changed/sh.yaml"
"$BIN" --log error run --config "$DIR" > "$DIR/engine.log" 2>&1 &
sleep 1.5
# N synthetic ADT^A01/A08 messages, each patient's NHS number valid (modulus 11), one file.
python3 - "$N" > "$DIR/traffic.hl7" <<'EOP'
import sys
def nhs(n):
    while True:
        base = f"999{n:06d}"
        total = sum(int(d) * (10 - i) for i, d in enumerate(base))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return base + str(check)
        n += 1
for n in range(int(sys.argv[1])):
    t = "A01" if n % 4 else "A08"
    print(f"MSH|^~\\&|PAS|RXX|WYVERN|CHIE|20261125090000||ADT^{t}^ADT_A01|SB{n:07d}|P|2.4")
    print(f"EVN|{t}|20261125090000")
    print(f"PID|1||K{n:07d}^^^RXX^MR~{nhs(n % 1000000)}^^^NHS^NH||TESTPATIENT^ALEX||19700101|U")
    print(f"PV1|1|I|W{n % 20}^BAY1^BED{n % 8}|||||||||||||||V{n:08d}")
EOP
echo "== ingest: $N messages, one connection, window 32 (the same-run baseline)"
/usr/bin/time -f "   %e s wall" "$BIN" --log warn send --window 32 --to 127.0.0.1:27620 "$DIR/traffic.hl7" 2>&1 >/dev/null | tail -2
for C in same changed same changed; do
  echo "== shadow, candidate: $C"
  /usr/bin/time -f "   %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
    "$BIN" --log warn replay --config "$DIR" --since 1h --shadow "$DIR/$C/sh.yaml" 2>&1 | tail -3 || true
done
