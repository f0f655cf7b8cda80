#!/usr/bin/env bash
# Redis streams durable publish and consumer-group runs: for each appendfsync setting asked
# for, a fresh redis-server (append-only file on, RDB snapshots off) on a Unix socket and a free
# loopback port, then for 64 B and 1 KiB:
#   publish          N x XADD, pipelined 1024 at a time, into a deleted-and-recreated stream
#   redis-benchmark  the same XADD with a literal payload of the size (-c 1 -P 1024), as a
#                    cross-check of the publisher (into a separate key)
#   consume          the N entries with a consumer group of 2 members, XREADGROUP COUNT 1000,
#                    one XACK per batch pipelined with the next read
#   consume (each)   the same with one XACK per entry
# Prints one JSON line per result (plus human lines on stderr); stops the server.
#
#   ./run.sh [N] [everysec|always|both]    # defaults: 200000 entries, appendfsync everysec
#
# Installs redis-server with apt-get when it is missing and we are root. REDIS_SERVER and
# REDIS_BENCHMARK override the binaries; TRANSPORT=tcp uses the TCP port instead of the Unix
# socket; STORE_PARENT=/some/dir puts the append-only file there instead of under $TMPDIR (use a
# real disk: fsync on tmpfs is free). PIPELINE, CONSUMERS, BATCH and SIZES override the defaults.
set -euo pipefail

count=${1:-200000}
which_fsync=${2:-everysec}
sizes=${SIZES:-64 1024}
pipeline=${PIPELINE:-1024}
consumers=${CONSUMERS:-2}
batch=${BATCH:-1000}
transport=${TRANSPORT:-unix}
case $which_fsync in
    everysec) fsyncs=everysec ;;
    always) fsyncs=always ;;
    both) fsyncs="everysec always" ;;
    *) echo "second argument: everysec, always or both" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

server=${REDIS_SERVER:-$(command -v redis-server || true)}
if [[ -z $server ]]; then
    if [[ $(id -u) == 0 ]]; then
        echo "redis-server not found: apt-get install -y redis-server" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2
        server=$(command -v redis-server || true)
    fi
    if [[ -z $server ]]; then
        echo "redis-server not found: apt-get install redis-server (or set REDIS_SERVER)" >&2
        exit 1
    fi
fi
rbench=${REDIS_BENCHMARK:-$(command -v redis-benchmark || true)}

cargo build --release --quiet
bench=$here/target/release/redis-streams-bench

free_port() {
    # Bind port 0, read what the kernel chose, release it.
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d "${STORE_PARENT:-${TMPDIR:-/tmp}}/redis-streams-bench.XXXXXX")
server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# Wait up to 10 s for a line matching $2 in file $1.
wait_for() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

echo "redis-server: $server ($("$server" --version))" >&2
echo "redis crate: $(grep -A1 '^name = "redis"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')" >&2
echo "store: $work on $(df -T "$work" | awk 'NR==2 {print $1 " (" $2 ")"}')" >&2
echo "load: $(uptime)" >&2

for fsync in $fsyncs; do
    port=$(free_port)
    dir=$work/data-$fsync
    sock=$work/redis-$fsync.sock
    mkdir -p "$dir"
    "$server" --port "$port" --bind 127.0.0.1 --unixsocket "$sock" --unixsocketperm 700 \
        --appendonly yes --appendfsync "$fsync" --dir "$dir" --save '' --daemonize no \
        >"$work/server-$fsync.log" 2>&1 &
    server_pid=$!
    wait_for "$work/server-$fsync.log" "Ready to accept connections"
    if [[ $transport == tcp ]]; then
        url=redis://127.0.0.1:$port
        rb_target=(-h 127.0.0.1 -p "$port")
    else
        url=redis+unix://$sock
        rb_target=(-s "$sock")
    fi
    for size in $sizes; do
        "$bench" publish --url "$url" --count "$count" --size "$size" --pipeline "$pipeline"
        if [[ -n $rbench ]]; then
            # A literal payload of exactly $size bytes (this redis-benchmark has no
            # data-size placeholder for custom commands; -d applies to its built-in tests).
            payload=$(head -c "$size" /dev/zero | tr '\0' x)
            "$rbench" "${rb_target[@]}" -n "$count" -c 1 -P "$pipeline" --csv \
                XADD bench-rb '*' f "$payload" >"$work/rb.csv"
            python3 - "$work/rb.csv" "$size" "$count" "$pipeline" "$fsync" "$transport" <<'PY'
import csv, json, sys
path, size, count, pipeline, fsync, transport = sys.argv[1:]
rows = list(csv.reader(open(path)))
rps = float(rows[-1][1])
print(json.dumps({"peer": "redis-streams", "tool": "redis-benchmark", "mode": "publish",
                  "persistence": f"appendonly=yes,appendfsync={fsync}", "transport": transport,
                  "size": int(size), "count": int(count), "clients": 1, "pipeline": int(pipeline),
                  "msgs_per_s": round(rps), "mb_per_s": round(rps * int(size) / 1e6, 1)},
                 separators=(",", ":")))
PY
            redis-cli "${rb_target[@]}" DEL bench-rb >/dev/null 2>&1 || true
        fi
        "$bench" consume --url "$url" --count "$count" --size "$size" --consumers "$consumers" \
            --batch "$batch" --ack batch
        "$bench" consume --url "$url" --count "$count" --size "$size" --consumers "$consumers" \
            --batch "$batch" --ack each
    done
    stop_server
done
