#!/usr/bin/env bash
# Interleaved A/B of two `mycelium` binaries on the BENCHMARKS.md workloads: a fresh broker per
# run, the two binaries' order alternating per round, one JSON line per run on OUT.
#
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN ROUNDS OUT [WORKLOAD...]
#
# Each binary runs its broker on the example broker.toml beside it (BEFORE_BIN's directory, else
# this checkout's), with socket_path moved to a private directory. WORKLOAD names: w1_uds w2_uds
# w3_uds w5_uds w4_uds w1_shm w2_shm w3_shm w5_shm w4_shm_busy w4_shm_parked (default: all);
# req_uds req_shm_busy (request/reply, binaries that have `bench --request`).
set -u
if [ $# -lt 4 ]; then sed -n 2,10p "$0"; exit 2; fi
BEFORE=$1; AFTER=$2; ROUNDS=$3; OUT=$4; shift 4
HERE=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d)
for side in before after; do
  bin=$BEFORE; [ $side = after ] && bin=$AFTER
  config=$(dirname "$bin")/broker.toml; [ -f "$config" ] || config=$HERE/broker.toml
  sed "s#^socket_path.*#socket_path = \"$D/b.sock\"#" "$config" > "$D/broker.$side.toml"
done
declare -A W=(
 [w1_uds]="--transport uds --count 20000000"
 [w2_uds]="--transport uds --count 4000000 --size 1024"
 [w3_uds]="--transport uds --count 5000000 --subscribers 4"
 [w5_uds]="--transport uds --count 20000000 --subscribers 2 --routing queue"
 [w4_uds]="--transport uds --pingpong 50000"
 [w1_shm]="--transport shm --count 20000000"
 [w2_shm]="--transport shm --count 5000000 --size 1024"
 [w3_shm]="--transport shm --count 5000000 --subscribers 4"
 [w5_shm]="--transport shm --count 20000000 --subscribers 2 --routing queue"
 [w4_shm_busy]="--transport shm --busy-poll --pingpong 100000"
 [w4_shm_parked]="--transport shm --pingpong 10000 --interval-us 1000"
 [req_uds]="--transport uds --request 20000"
 [req_shm_busy]="--transport shm --busy-poll --request 100000"
)
WORKLOADS=${*:-w1_uds w2_uds w3_uds w5_uds w4_uds w1_shm w2_shm w3_shm w5_shm w4_shm_busy w4_shm_parked}
for r in $(seq 1 "$ROUNDS"); do
  for w in $WORKLOADS; do
    if [ $((r % 2)) = 1 ]; then sides="before after"; else sides="after before"; fi
    for side in $sides; do
      bin=$BEFORE; [ $side = after ] && bin=$AFTER
      rm -f "$D/b.sock"
      "$bin" run --config "$D/broker.$side.toml" 2>"$D/broker.$side.log" & broker=$!
      for _ in $(seq 1 100); do [ -S "$D/b.sock" ] && break; sleep 0.05; done
      json=$(timeout 180 "$bin" bench --socket "$D/b.sock" ${W[$w]} --json 2>/dev/null | grep '^{' | tail -1)
      echo "{\"round\":$r,\"workload\":\"$w\",\"bin\":\"$side\",\"result\":${json:-null}}" >> "$OUT"
      kill -INT $broker; wait $broker 2>/dev/null
    done
  done
done
rm -rf "$D"
