#!/usr/bin/env bash
# Durable message rate, delivery rate and delivery latency of a three-node
# cluster on one PostgreSQL (deploy/cluster.sh: PostgreSQL, nodes 127.0.0.1:
# 7001..7003, HAProxy 127.0.0.1:8000), next to one charla-server on SQLite,
# on loopback, alternating, and prints the medians (docs/PERFORMANCE.md,
# "Cluster").
#
#   bench/cluster.sh [ROUNDS]      (default 3)
#
# Each round starts a fresh cluster, runs every scenario once per case
# (cases alternate within a scenario), then takes the cluster down. Each
# SQLite run gets a fresh server and database.
#
# Scenarios (charla-bench fanout; every run bounded by --timeout):
#   ingest     10 sessions, all sending, 5000 messages each, window 64
#   fanout50   50 sessions, all sending, 2000 messages each, window 8
#   pingpong   2 sessions, one sending 2000 messages, window 1
#   crossload  50 sessions, 10 sending 1000 messages each, window 8
# Cases: sqlite (one process, SQLite); nodes (sessions dealt over the three
# nodes' own addresses, --spread); haproxy (every session through
# 127.0.0.1:8000); for pingpong and crossload instead: same-node (all on
# node-1) and cross-node (senders on node-1, the others on node-2,
# --receivers-addr). Direct connections to the nodes come from 127.0.0.2
# (--source), since the nodes expect a PROXY header from 127.0.0.1.
#
# Environment: SCENARIOS, OUT (result folder), PGPORT (default 55439),
# CHARLA_PORT (the SQLite server, default 7200), QUIET_WAIT=1 (as in
# bench/compare.sh: wait before each run while a compiler runs or the
# machine is more than 20% busy; the conditions are logged in
# OUT/conditions.log either way). Needs what deploy/cluster.sh needs (PostgreSQL server
# binaries, haproxy) and python3. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SCENARIOS=${SCENARIOS:-"ingest fanout50 pingpong crossload"}
CHARLA_PORT=${CHARLA_PORT:-7200}
export PGPORT=${PGPORT:-55439}
OUT=${OUT:-$(mktemp -d /tmp/charla-cluster-bench.XXXXXX)}
mkdir -p "$OUT"
# The cluster's own state folder, apart from any other cluster on the machine.
export CHARLA_CLUSTER_STATE="$OUT/cluster"
export CHARLA_NODE_ARGS="--bcrypt-cost 4 --msg-rate 0"
export RUST_LOG=warn

cargo build --release --bins >&2
BENCH=target/release/charla-bench
SERVER=target/release/charla-server
NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003

cluster_up=0
sqlite_pid=
cleanup() {
    if [ -n "$sqlite_pid" ]; then kill "$sqlite_pid" 2>/dev/null || true; fi
    if [ "$cluster_up" = 1 ]; then deploy/cluster.sh down >&2 || true; fi
}
trap cleanup EXIT

args_of() {
    case $1 in
        ingest) echo "fanout --clients 10 --senders 10 --messages 5000 --window 64" ;;
        fanout50) echo "fanout --clients 50 --senders 50 --messages 2000 --window 8" ;;
        pingpong) echo "fanout --clients 2 --senders 1 --messages 2000 --window 1" ;;
        crossload) echo "fanout --clients 50 --senders 10 --messages 1000 --window 8" ;;
    esac
}
cases_of() {
    case $1 in
        pingpong | crossload) echo "sqlite same-node cross-node" ;;
        *) echo "sqlite nodes haproxy" ;;
    esac
}
# Where the bench connects for a case (an option of charla-bench itself).
placement_of() {
    case $1 in
        sqlite) echo "--addr 127.0.0.1:$CHARLA_PORT" ;;
        # From 127.0.0.2: the nodes take PROXY headers from 127.0.0.1
        # (HAProxy) and connections from anywhere else directly.
        nodes | same-node | cross-node) echo "--addr 127.0.0.1:7001 --source 127.0.0.2" ;;
        haproxy) echo "--addr 127.0.0.1:8000" ;;
    esac
}
# How the sessions are dealt over the nodes (options of `fanout`).
spread_of() {
    case $1 in
        nodes) echo "--spread $NODES" ;;
        cross-node) echo "--receivers-addr 127.0.0.1:7002" ;;
    esac
}

# CPU seconds used so far by the processes given (with the children they
# have reaped: PostgreSQL's ended backends count in the postmaster).
cpu_of() {
    local ticks=0 p f
    for p in "$@"; do
        # Fields after the command name: utime is the 12th, then stime,
        # cutime, cstime.
        f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        read -r _ _ _ _ _ _ _ _ _ _ _ ut st cut cst _ <<<"$f"
        ticks=$((ticks + ut + st + cut + cst))
    done
    echo "$ticks"
}
node_pids() { cat "$CHARLA_CLUSTER_STATE"/node-{1,2,3}.pid; }
pg_pids() {
    local postmaster
    postmaster=$(head -n 1 "$(cat "$CHARLA_CLUSTER_STATE/pgdir")/data/postmaster.pid")
    echo "$postmaster"
    pgrep -P "$postmaster" || true
}

# busy_pct, conditions, wait_quiet (QUIET_WAIT=1).
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

start_sqlite() {
    rm -f "$OUT"/sqlite.db* "$OUT/sqlite.out"
    "$SERVER" --addr "127.0.0.1:$CHARLA_PORT" --db "$OUT/sqlite.db" --bcrypt-cost 4 --msg-rate 0 \
        >"$OUT/sqlite.out" 2>"$OUT/sqlite.err" &
    sqlite_pid=$!
    for _ in $(seq 100); do grep -q "Servidor escuchando" "$OUT/sqlite.out" 2>/dev/null && return; sleep 0.05; done
    echo "charla-server did not start" >&2
    exit 1
}
stop_sqlite() {
    kill "$sqlite_pid" 2>/dev/null || true
    wait "$sqlite_pid" 2>/dev/null || true
    sqlite_pid=
}

for round in $(seq "$ROUNDS"); do
    deploy/cluster.sh up >"$OUT/cluster-up.$round.log"
    cluster_up=1
    for scenario in $SCENARIOS; do
        for case in $(cases_of "$scenario"); do
            wait_quiet
            conditions "before $scenario $case round $round" "$BUSY"
            tick=$(getconf CLK_TCK)
            if [ "$case" = sqlite ]; then
                start_sqlite
                server_pids=("$sqlite_pid")
                db_pids=()
            else
                mapfile -t server_pids < <(node_pids)
                mapfile -t db_pids < <(pg_pids)
                db_pids+=("$(cat "$CHARLA_CLUSTER_STATE/haproxy.pid")")
            fi
            server_before=$(cpu_of "${server_pids[@]}")
            db_before=$(cpu_of "${db_pids[@]}")
            # shellcheck disable=SC2046
            line=$("$BENCH" $(placement_of "$case") --json --timeout 300 --prefix "r${round}${scenario}" \
                $(args_of "$scenario") $(spread_of "$case"))
            server_after=$(cpu_of "${server_pids[@]}")
            mapfile -t db_pids_after < <(if [ "$case" != sqlite ]; then pg_pids; cat "$CHARLA_CLUSTER_STATE/haproxy.pid"; fi)
            db_after=$(cpu_of "${db_pids_after[@]}")
            if [ "$case" = sqlite ]; then stop_sqlite; fi
            conditions "after  $scenario $case round $round"
            python3 -c '
import json, sys
row = json.loads(sys.argv[1])
tick = float(sys.argv[7])
row.update(name=sys.argv[2], case=sys.argv[3], round=int(sys.argv[4]),
           server_cpu_s=(int(sys.argv[6]) - int(sys.argv[5])) / tick,
           db_cpu_s=(int(sys.argv[9]) - int(sys.argv[8])) / tick)
print(json.dumps(row))' "$line" "$scenario" "$case" "$round" "$server_before" "$server_after" "$tick" \
                "$db_before" "$db_after" | tee -a "$OUT/runs.jsonl"
        done
    done
    deploy/cluster.sh down >"$OUT/cluster-down.$round.log"
    cluster_up=0
done

python3 - "$OUT" <<'PY'
import json, statistics, sys, os
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl")) if l.strip()]
keys = ["messages_per_s", "deliveries_per_s", "latency_p50_us", "latency_p99_us",
        "receivers_latency_p50_us", "receivers_latency_p99_us", "deliveries_lost",
        "server_cpu_s", "db_cpu_s", "server_us_per_message", "bench_cpu_s"]
def value(r, k):
    if k == "server_us_per_message":
        return (r["server_cpu_s"] + r["db_cpu_s"]) * 1e6 / r["messages"]
    return r.get(k)
print(f"\nmedians of the runs in {out} (server = charla processes; db = PostgreSQL and HAProxy)")
for name in dict.fromkeys(r["name"] for r in rows):
    cases = list(dict.fromkeys(r["case"] for r in rows if r["name"] == name))
    print(f"\n{name}")
    print(f"  {'metric':26}" + "".join(f" {c:>13}" for c in cases))
    for k in keys:
        cells = []
        for c in cases:
            vs = [value(r, k) for r in rows if r["name"] == name and r["case"] == c]
            vs = [v for v in vs if v is not None]
            cells.append(f" {statistics.median(vs):13.1f}" if vs else f" {'-':>13}")
        if any(c.strip() != "-" for c in cells):
            print(f"  {k:26}" + "".join(cells))
PY
