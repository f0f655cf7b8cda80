#!/usr/bin/env bash
# Interleaved runs of one `mycelium` binary on workload variants (headers, stamps, idle
# patterns, request/reply): a fresh broker per run, the variants' order rotating per round,
# one JSON line per run on OUT.
#
#   scripts/bench-variants.sh BIN ROUNDS OUT [VARIANT...]
#
# The broker runs on the example broker.toml beside BIN (else this checkout's), socket moved to
# a private directory; variants ending in _stamp run it with `stamp = true` on bench.fanout.
# VARIANT names: w1_uds w1_uds_h3 w1_uds_p10k w1_uds_stamp w1_shm w1_shm_h3 w1_shm_stamp
# w4_uds w4_shm_busy req_uds req_shm_busy req_shm (default: all).
set -u
if [ $# -lt 3 ]; then sed -n 2,11p "$0"; exit 2; fi
BIN=$1; ROUNDS=$2; OUT=$3; shift 3
HERE=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d)
config=$(dirname "$BIN")/broker.toml; [ -f "$config" ] || config=$HERE/broker.toml
sed "s#^socket_path.*#socket_path = \"$D/b.sock\"#" "$config" > "$D/plain.toml"
# stamp = true on bench.fanout: the line after its name.
sed '/^name = "bench.fanout"$/a stamp = true' "$D/plain.toml" > "$D/stamp.toml"
declare -A V=(
 [w1_uds]="--transport uds --count 20000000"
 [w1_uds_h3]="--transport uds --count 20000000 --headers 3"
 [w1_uds_p10k]="--transport uds --count 20000000 --patterns 10000"
 [w1_uds_stamp]="--transport uds --count 20000000"
 [w1_shm]="--transport shm --count 20000000"
 [w1_shm_h3]="--transport shm --count 20000000 --headers 3"
 [w1_shm_stamp]="--transport shm --count 20000000"
 [w4_uds]="--transport uds --pingpong 50000"
 [w4_shm_busy]="--transport shm --busy-poll --pingpong 100000"
 [req_uds]="--transport uds --request 20000"
 [req_shm_busy]="--transport shm --busy-poll --request 100000"
 [req_shm]="--transport shm --request 20000"
)
VARIANTS=(${*:-w1_uds w1_uds_h3 w1_uds_p10k w1_uds_stamp w1_shm w1_shm_h3 w1_shm_stamp w4_uds w4_shm_busy req_uds req_shm_busy req_shm})
n=${#VARIANTS[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    v=${VARIANTS[$(((i + r) % n))]}
    cfg=$D/plain.toml; case $v in *_stamp) cfg=$D/stamp.toml ;; esac
    rm -f "$D/b.sock"
    "$BIN" run --config "$cfg" 2>"$D/broker.log" & broker=$!
    for _ in $(seq 1 100); do [ -S "$D/b.sock" ] && break; sleep 0.05; done
    json=$(timeout 300 "$BIN" bench --socket "$D/b.sock" ${V[$v]} --json 2>/dev/null | grep '^{' | tail -1)
    echo "{\"round\":$r,\"workload\":\"$v\",\"bin\":\"after\",\"result\":${json:-null}}" >> "$OUT"
    kill -INT $broker; wait $broker 2>/dev/null
  done
done
rm -rf "$D"
