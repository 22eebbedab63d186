#!/usr/bin/env bash
# Runs the same charla-bench scenarios against charla-server and ngIRCd on
# loopback, alternating, and prints each result and the median ratios.
#
#   bench/compare.sh [RUNS]        (default 3 runs per scenario and server)
#
# SERVERS chooses the columns, run in this order within each run (default
# "charla irc"): charla (charla's protocol, plain TCP), irc (ngIRCd),
# charla-irc (charla's IRC front end, --irc-addr: the bench's accounts are
# made first over charla's protocol, --accounts-at) and charla-tls (charla's
# protocol inside TLS, --tls-addr, with a self-signed certificate made in
# OUT). Each charla column is a fresh charla-server of its own.
#
# Needs: ngircd (Debian: apt-get install ngircd; the script installs it when
# run as root and it is missing), python3, and `ulimit -n` above the largest
# client count. Only 127.0.0.1 is used. Each run is bounded by --timeout.
# Environment: SCENARIOS to choose (default "fanout50 fanout500 pingpong
# connect"), CONNECT_CLIENTS (default 2000), MESSAGES (default 2000, the
# messages per sender of the fanout runs; the issue's M=200 runs last only a
# fraction of a second here, too short to be stable), OUT (result folder),
# QUIET_WAIT=1 to wait before each run while a compiler (rustc) runs or the
# machine is more than 20% busy (polls every 30 s, up to 20 minutes). The
# 1-minute load, that busy share and running compilers are logged before
# and after each run in OUT/conditions.log either way.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
SCENARIOS=${SCENARIOS:-"fanout50 fanout500 pingpong connect"}
CONNECT_CLIENTS=${CONNECT_CLIENTS:-2000}
MESSAGES=${MESSAGES:-2000}
CHARLA_PORT=${CHARLA_PORT:-7100}
IRC_PORT=${IRC_PORT:-7167}
CHARLA_IRC_PORT=${CHARLA_IRC_PORT:-7168}
CHARLA_TLS_PORT=${CHARLA_TLS_PORT:-7143}
SERVERS=${SERVERS:-"charla irc"}
OUT=${OUT:-$(mktemp -d /tmp/charla-compare.XXXXXX)}
mkdir -p "$OUT"

for server in $SERVERS; do
    case $server in
        charla | irc | charla-irc | charla-tls) ;;
        *) echo "unknown server $server in SERVERS (charla irc charla-irc charla-tls)" >&2; exit 2 ;;
    esac
done
if [[ " $SERVERS " == *" irc "* ]] && ! command -v ngircd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y ngircd >/dev/null
    else
        echo "ngircd is not installed: apt-get install ngircd" >&2
        exit 1
    fi
fi
cargo build --release --bins >&2
BENCH=target/release/charla-bench
SERVER=target/release/charla-server
if [[ " $SERVERS " == *" charla-tls "* ]]; then
    "$SERVER" certificate --name 127.0.0.1 --name localhost --cert "$OUT/cert.pem" --key "$OUT/key.pem" --force >/dev/null
fi

# ngIRCd with its brakes lifted, as fair as charla's settings.
cat > "$OUT/ngircd.conf" <<CONF
[Global]
    Name = bench.invalid
    Info = charla comparison
    Listen = 127.0.0.1
    Ports = $IRC_PORT
    PidFile = $OUT/ngircd.pid
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxPenaltyTime = 0
    PingTimeout = 600
    PongTimeout = 600
[Options]
    PAM = no
    DNS = no
    Ident = no
    OperCanUseMode = yes
CONF

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Arguments: extra options for the server (--irc-addr, --tls-addr...).
start_charla() {
    # charla.out too: the start is detected by its "listening" line, and an
    # old file's line would be taken for the new server's. Every listener is
    # bound before the first such line.
    rm -f "$OUT"/charla.db* "$OUT/charla.out"
    RUST_LOG=warn "$SERVER" --addr 127.0.0.1:$CHARLA_PORT --db "$OUT/charla.db" --bcrypt-cost 4 --msg-rate 0 "$@" \
        >"$OUT/charla.out" 2>"$OUT/charla.err" &
    CHARLA_PID=$!
    pids+=("$CHARLA_PID")
    for _ in $(seq 100); do grep -q "Servidor escuchando" "$OUT/charla.out" 2>/dev/null && return; sleep 0.05; done
    echo "charla-server did not start" >&2; exit 1
}
start_irc() {
    ngircd -n -f "$OUT/ngircd.conf" >"$OUT/ngircd.log" 2>&1 &
    IRC_PID=$!
    pids+=("$IRC_PID")
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$IRC_PORT) 2>/dev/null && return; sleep 0.05; done
    echo "ngircd did not start" >&2; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# busy_pct, conditions, wait_quiet (QUIET_WAIT=1).
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

args_of() {
    case $1 in
        fanout50) echo "fanout --clients 50 --senders 50 --messages $MESSAGES --window 8" ;;
        fanout500) echo "fanout --clients 500 --senders 10 --messages $((MESSAGES * 5)) --window 8" ;;
        pingpong) echo "fanout --clients 2 --senders 1 --messages 20000 --window 1" ;;
        connect) echo "connect --clients $CONNECT_CLIENTS" ;;
    esac
}

for scenario in $SCENARIOS; do
    for run in $(seq "$RUNS"); do
        for server in $SERVERS; do
            wait_quiet
            conditions "before $scenario $server run $run" "$BUSY"
            # A fresh server per run, so runs do not inherit each other's state.
            case $server in
                charla) start_charla; pid=$CHARLA_PID; bench_to=(--addr "127.0.0.1:$CHARLA_PORT") ;;
                irc) start_irc; pid=$IRC_PID; bench_to=(--addr "127.0.0.1:$IRC_PORT" --protocol irc) ;;
                charla-irc)
                    start_charla --irc-addr "127.0.0.1:$CHARLA_IRC_PORT"; pid=$CHARLA_PID
                    bench_to=(--addr "127.0.0.1:$CHARLA_IRC_PORT" --protocol irc --accounts-at "127.0.0.1:$CHARLA_PORT") ;;
                charla-tls)
                    start_charla --tls-addr "127.0.0.1:$CHARLA_TLS_PORT" --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem"
                    pid=$CHARLA_PID
                    bench_to=(--addr "127.0.0.1:$CHARLA_TLS_PORT" --tls --ca "$OUT/cert.pem") ;;
            esac
            # shellcheck disable=SC2046
            "$BENCH" "${bench_to[@]}" --server-pid "$pid" --json --timeout 300 \
                --prefix "b${run}x" $(args_of "$scenario") | tee -a "$OUT/$scenario.$server.jsonl"
            stop "$pid"
            conditions "after  $scenario $server run $run"
        done
    done
done

SERVERS="$SERVERS" python3 - "$OUT" $SCENARIOS <<'PY'
import json, statistics, sys, os
out, scenarios = sys.argv[1], sys.argv[2:]
servers = os.environ["SERVERS"].split()
heads = {"charla": "charla", "irc": "ngircd", "charla-irc": "charla IRC", "charla-tls": "charla TLS"}
# Ratios printed when both columns ran: (name, numerator, denominator).
ratios = [("charla/ngircd", "charla", "irc"), ("IRC front/ngircd", "charla-irc", "irc"),
          ("TLS/plain", "charla-tls", "charla")]
ratios = [r for r in ratios if r[1] in servers and r[2] in servers]
keys = {"fanout": ["deliveries_per_s", "messages_per_s", "latency_p50_us", "latency_p99_us", "deliveries_lost",
                   "server_cpu_s", "server_cpu_us_per_message"],
        "connect": ["login_seconds", "logins_per_s", "marker_all_ms", "server_rss_per_session_kib", "server_cpu_s"]}
def value(row, k):
    if k == "server_cpu_us_per_message":
        return row["server_cpu_s"] * 1e6 / row["messages"]
    return row[k]
print(f"\nmedians of the runs in {out}")
for s in scenarios:
    rows = {}
    for server in servers:
        path = os.path.join(out, f"{s}.{server}.jsonl")
        if os.path.exists(path):
            rows[server] = [json.loads(l) for l in open(path) if l.strip()]
    if not rows:
        continue
    kind = next(iter(rows.values()))[0]["scenario"]
    print(f"\n{s}")
    print(f"  {'metric':28}" + "".join(f" {heads[srv]:>14}" for srv in servers)
          + "".join(f" {name:>17}" for name, _, _ in ratios))
    for k in keys[kind]:
        med = {srv: statistics.median(value(r, k) for r in rs) for srv, rs in rows.items()
               if all(k in r or k == "server_cpu_us_per_message" and "server_cpu_s" in r for r in rs)}
        fmt = lambda v: "-" if v is None else f"{v:14.1f}" if abs(v) >= 100 else f"{v:14.3f}"
        line = f"  {k:28}" + "".join(f" {fmt(med.get(srv)):>14}" for srv in servers)
        for _, a, b in ratios:
            x, y = med.get(a), med.get(b)
            line += f" {x / y:17.2f}" if x is not None and y else f" {'-':>17}"
        print(line)
PY
