#!/usr/bin/env bash
# Measures file sharing on loopback with the real binaries: one 1 GiB file
# of random bytes shared by a `charla` client and downloaded by another,
# directly (owner's endpoint) and through the server's relay (owner with
# --share-addr none), and once more through the relay with the server's
# default pacing. During each relayed download the server's CPU time and
# RSS are sampled from /proc every 0.2 s.
#
#   bench/files.sh            (release build; about 2 minutes and 3 GiB of disk)
#
# Environment: SIZE_MIB (default 1024), PORT (default 7300; the relay uses
# PORT+1), OUT (work folder; default a new one under /tmp). Only 127.0.0.1
# is used; every wait is bounded; the big files are deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
PORT=${PORT:-7300}
OUT=${OUT:-$(mktemp -d /tmp/charla-files.XXXXXX)}
mkdir -p "$OUT"
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release --bins >&2
SERVER=$TARGET/release/charla-server
CLIENT=$TARGET/release/charla
TICK=$(getconf CLK_TCK)

pids=()
cleanup() {
    exec 3>&- 4>&- 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$OUT"/*.bin "$OUT"/down/* "$OUT"/down/.??* 2>/dev/null || true
}
trap cleanup EXIT

# Waits up to $3 seconds for file $1 to contain $2; prints the first line
# that does.
wait_for() {
    local i
    for ((i = 0; i < $3 * 50; i++)); do
        if grep -q -F -- "$2" "$1" 2>/dev/null; then
            grep -m 1 -F -- "$2" "$1"
            return 0
        fi
        sleep 0.02
    done
    echo "timed out waiting for '$2' in $1:" >&2
    tail -n 20 "$1" >&2
    return 1
}

# The server's user+system CPU seconds (as ticks) and RSS in KiB.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# start_server NAME [ARGS...]: a fresh server on PORT; sets SERVER_PID.
start_server() {
    local name=$1
    shift
    rm -f "$OUT/$name".db*
    "$SERVER" --addr "127.0.0.1:$PORT" --relay-addr "127.0.0.1:$((PORT + 1))" \
        --db "$OUT/$name.db" --bcrypt-cost 4 "$@" >"$OUT/$name.server.out" 2>"$OUT/$name.server.log" &
    SERVER_PID=$!
    pids+=("$SERVER_PID")
    wait_for "$OUT/$name.server.out" "127.0.0.1:$PORT" 10 >/dev/null
}

# start_client FD NAME [ARGS...]: a charla client whose stdin is a FIFO
# held open on descriptor FD (3 or 4), registered as NAME, in English.
start_client() {
    local fd=$1 name=$2
    shift 2
    rm -f "$OUT/$name.in"
    mkfifo "$OUT/$name.in"
    "$CLIENT" --server "127.0.0.1:$PORT" --lang en "$@" <"$OUT/$name.in" >"$OUT/$name.out" 2>&1 &
    pids+=("$!")
    eval "exec $fd>\"$OUT/$name.in\""
    printf '2\n%s Bench\n%s\nsecreto123\n' "$name" "$name" >&"$fd"
    wait_for "$OUT/$name.out" "Type a message" 10 >/dev/null
}

now() { date +%s.%N; }

echo "writing $SIZE_MIB MiB of random bytes" >&2
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$OUT/datos.bin"
mkdir -p "$OUT/down"

# run NAME OWNER_ARGS SERVER_ARGS...: one share and one download; prints a
# result line.
run() {
    local name=$1 owner_args=$2
    shift 2
    rm -f "$OUT/down/datos.bin"
    # Dirty pages of the last run (or of the file just written) would be
    # written back during this one.
    sync
    start_server "$name" "$@"
    # shellcheck disable=SC2086
    start_client 3 "owner$name" $owner_args
    local started
    started=$(now)
    echo "/share $OUT/datos.bin" >&3
    local line id
    line=$(wait_for "$OUT/owner$name.out" "You are sharing" 120)
    local hashed
    hashed=$(now)
    id=$(sed -E 's/.* as (f[0-9a-f]+);.*/\1/' <<<"$line")
    start_client 4 "fetcher$name"
    local cpu0 rss0 t0
    cpu0=$(cpu_ticks "$SERVER_PID")
    rss0=$(rss_kib "$SERVER_PID")
    t0=$(now)
    echo "/get $id $OUT/down" >&4
    # Sample the server while the download runs (bounded: 600 s).
    local rss_max=$rss0 i
    for ((i = 0; i < 3000; i++)); do
        if grep -q -e "Download complete" -e "Could not download" "$OUT/fetcher$name.out"; then break; fi
        local rss
        rss=$(rss_kib "$SERVER_PID")
        ((rss > rss_max)) && rss_max=$rss
        sleep 0.2
    done
    local t1 cpu1 rss1
    t1=$(now)
    cpu1=$(cpu_ticks "$SERVER_PID")
    rss1=$(rss_kib "$SERVER_PID")
    wait_for "$OUT/fetcher$name.out" "Download complete" 1 >/dev/null
    cmp -s "$OUT/datos.bin" "$OUT/down/datos.bin" || { echo "$name: the copy differs" >&2; exit 1; }
    python3 - "$name" "$SIZE_MIB" "$started" "$hashed" "$t0" "$t1" "$cpu0" "$cpu1" "$TICK" "$rss0" "$rss_max" "$rss1" <<'PY'
import sys
name, mib, started, hashed, t0, t1, cpu0, cpu1, tick, rss0, rssmax, rss1 = sys.argv[1:]
mib = float(mib)
secs = float(t1) - float(t0)
cpu = (float(cpu1) - float(cpu0)) / float(tick)
print(f"{name}: {mib:.0f} MiB in {secs:.2f} s = {mib / secs:.0f} MiB/s "
      f"(hash at /share: {float(hashed) - float(started):.2f} s); "
      f"server CPU {cpu:.2f} s ({100 * cpu / secs:.0f}% of one core), "
      f"RSS {float(rss0)/1024:.1f} MiB before, {float(rssmax)/1024:.1f} MiB at most, {float(rss1)/1024:.1f} MiB after")
PY
    exec 3>&- 4>&-
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

run direct "" --relay-rate 0
run relayed "--share-addr none" --relay-rate 0
run paced "--share-addr none"
echo "logs in $OUT (the big files were deleted)" >&2
