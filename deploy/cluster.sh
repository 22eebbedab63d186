#!/usr/bin/env bash
# A charla cluster on this machine, without Docker: a throw-away PostgreSQL,
# three charla nodes and HAProxy in front of them (deploy/haproxy.cfg).
#
#   deploy/cluster.sh up                  start everything, wait until it serves
#   deploy/cluster.sh status              each node's /health, the live nodes,
#                                         HAProxy's view; non-zero if not all up
#   deploy/cluster.sh stop-node N [--kill]  stop node N (SIGTERM; --kill: kill -9)
#   deploy/cluster.sh start-node N        start node N again (same name, ports)
#   deploy/cluster.sh down                stop everything `up` started, delete it
#
# Addresses (fixed, as in deploy/haproxy.cfg): HAProxy 127.0.0.1:8000 (its
# statistics page on 127.0.0.1:8404), node-N chat 127.0.0.1:700N and health
# 127.0.0.1:710N, PostgreSQL 127.0.0.1:$PGPORT (55432 unless set).
#
# Environment: PGPORT; CHARLA_SERVER (the charla-server binary; default
# target/release/charla-server, built if missing); CHARLA_PG_BIN (the folder
# of initdb and pg_ctl; default the newest /usr/lib/postgresql/*/bin, or
# the PATH); CHARLA_CLUSTER_STATE (default ${XDG_RUNTIME_DIR:-/tmp}/charla-cluster);
# RUST_LOG (the nodes' log level, default info); CHARLA_NODE_ARGS (more
# options for every node, split at spaces, kept for start-node: the
# benchmarks use "--bcrypt-cost 4 --msg-rate 0").
#
# PostgreSQL refuses to run as root: as root it runs as the `postgres` user
# (runuser), otherwise as you. Everything it keeps is in a temporary folder
# deleted by `down`: this cluster is for trying charla out and for drills,
# not for keeping a chat.

# The helpers run small bash scripts under `timeout` with '...' bodies: their
# $1 and $2 are those scripts' own arguments, expanded there, not here.
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
state=${CHARLA_CLUSTER_STATE:-${XDG_RUNTIME_DIR:-/tmp}/charla-cluster}
pgport=${PGPORT:-55432}
front_port=8000
stats_port=8404
nodes=(1 2 3)
# Bounded waits, in seconds.
wait_pg=30      # PostgreSQL starting (pg_ctl -t)
wait_node=30    # a node's /health turning 200
wait_name=15    # a killed node's name becoming free again (10 s after death)
wait_haproxy=15 # HAProxy answering with a node's HELLO
wait_stop=15    # a process ending after SIGTERM, before SIGKILL

say() { printf '%s\n' "$*"; }
warn() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
    warn "$*"
    exit 1
}

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- small helpers ---------------------------------------------------------

# Whether something accepts TCP connections on 127.0.0.1:$1.
listening() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# An HTTP GET of 127.0.0.1:$1$2 (2 s at most): sets $http_status (000 when
# nothing answered) and $http_body.
http_get() {
    local response
    response=$(timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: charla\r\nConnection: close\r\n\r\n" "$2" >&3
        cat <&3' _ "$1" "$2" 2>/dev/null) || true
    http_status=000
    http_body=
    if [[ $response == HTTP/* ]]; then
        http_status=${response#* }
        http_status=${http_status%% *}
        http_body=${response#*$'\r\n\r\n'}
    fi
}

# The first line a new connection to 127.0.0.1:$1 receives (3 s at most).
first_line() {
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        IFS= read -r line <&3 && printf "%s\n" "$line"' _ "$1" 2>/dev/null || true
}

# Whether pid $1 is alive and its command line contains $2 (so a pid the
# system reused for something else is never signalled).
is_ours() {
    local args
    [[ -n $1 ]] || return 1
    args=$(ps -o args= -p "$1" 2>/dev/null) || return 1
    [[ $args == *"$2"* ]]
}

# The pid recorded in $state/$1.pid, or nothing.
pid_of() {
    if [[ -f $state/$1.pid ]]; then
        cat "$state/$1.pid"
    fi
}

# Sends SIGTERM to the process recorded as $1 (if it is still the one whose
# command line contains $2), waits for it to end, and SIGKILLs it if it
# outlives the wait.
stop_pid() {
    local name=$1 pattern=$2 pid
    pid=$(pid_of "$name")
    if ! is_ours "$pid" "$pattern"; then
        rm -f "$state/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$pattern" "$wait_stop"; then
        warn "$name (pid $pid) still runs $wait_stop s after SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" "$pattern" 5 || warn "$name (pid $pid) survives SIGKILL"
    fi
    rm -f "$state/$name.pid"
    say "stopped $name (pid $pid)"
}

# Waits up to $3 seconds for pid $1 (command line containing $2) to end;
# fails if it still runs.
wait_gone() {
    local deadline=$((SECONDS + $3))
    while is_ours "$1" "$2"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# The last lines of a log, for error messages.
tail_of() {
    if [[ -f $1 ]]; then
        tail -n 15 "$1" | sed 's/^/    /' >&2
    fi
}

# --- PostgreSQL -------------------------------------------------------------

# The folder of initdb and pg_ctl.
find_pg_bin() {
    if [[ -n ${CHARLA_PG_BIN:-} ]]; then
        printf '%s\n' "$CHARLA_PG_BIN"
        return
    fi
    local found
    found=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $found && -x $found/initdb ]]; then
        printf '%s\n' "$found"
    elif command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
    else
        die "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql, or set CHARLA_PG_BIN"
    fi
}

# Runs a PostgreSQL server command as the user that owns the data: postgres
# when we are root, else ourselves.
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    local pgbin=$1 pgdir
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/charla-pg.XXXXXX")
    printf '%s\n' "$pgdir" >"$state/pgdir"
    printf '%s\n' "$pgbin" >"$state/pgbin"
    printf '%s\n' "$pgport" >"$state/pgport"
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root, PostgreSQL needs the 'postgres' user (apt-get install postgresql creates it)"
        chmod 755 "$pgdir"
        chown postgres: "$pgdir"
    fi
    say "PostgreSQL: initdb in $pgdir/data"
    as_pg "$pgbin/initdb" -A trust -U postgres -E UTF8 --no-sync -D "$pgdir/data" >"$state/initdb.log" 2>&1 ||
        {
            tail_of "$state/initdb.log"
            die "initdb failed (its output is above)"
        }
    say "PostgreSQL: starting on 127.0.0.1:$pgport"
    as_pg "$pgbin/pg_ctl" -w -t "$wait_pg" -D "$pgdir/data" -l "$pgdir/data/server.log" \
        -o "-p $pgport -k $pgdir/data -c listen_addresses=127.0.0.1" start >/dev/null ||
        {
            tail_of "$pgdir/data/server.log"
            die "PostgreSQL did not start on 127.0.0.1:$pgport (its log is above; PGPORT chooses another port)"
        }
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres charla ||
        die "could not create the database 'charla'"
}

stop_postgres() {
    local pgdir pgbin
    pgdir=$(cat "$state/pgdir" 2>/dev/null) || return 0
    pgbin=$(cat "$state/pgbin" 2>/dev/null) || return 0
    if [[ -f $pgdir/data/postmaster.pid ]]; then
        as_pg "$pgbin/pg_ctl" -w -t 30 -m fast -D "$pgdir/data" stop >/dev/null ||
            warn "pg_ctl stop failed; the data folder is $pgdir"
        say "stopped PostgreSQL"
    fi
    if [[ ! -f $pgdir/data/postmaster.pid && $pgdir == */charla-pg.* ]]; then
        rm -rf "$pgdir"
    fi
    rm -f "$state/pgdir" "$state/pgbin" "$state/pgport"
}

# --- nodes and HAProxy ---------------------------------------------------------

# The charla-server binary, built when it is missing.
server_binary() {
    if [[ -n ${CHARLA_SERVER:-} ]]; then
        [[ -x $CHARLA_SERVER ]] || die "CHARLA_SERVER=$CHARLA_SERVER is not an executable"
        printf '%s\n' "$CHARLA_SERVER"
        return
    fi
    local bin=$repo/target/release/charla-server
    if [[ ! -x $bin ]]; then
        say "building $bin (cargo build --release)" >&2
        (cd "$repo" && cargo build --release --bin charla-server --bin charla) >&2 ||
            die "cargo build --release failed"
    fi
    printf '%s\n' "$bin"
}

# Starts node $1 in the background and records its pid.
launch_node() {
    local n=$1 server extra=()
    server=$(cat "$state/server")
    read -ra extra <"$state/node-args"
    RUST_LOG=${RUST_LOG:-info} nohup "$server" \
        --db "postgres://postgres@127.0.0.1:$(cat "$state/pgport")/charla" \
        --node "node-$n" --addr "127.0.0.1:700$n" --health-addr "127.0.0.1:710$n" \
        --trusted-proxy 127.0.0.1 "${extra[@]}" \
        </dev/null >>"$state/node-$n.log" 2>&1 &
    printf '%s\n' "$!" >"$state/node-$n.pid"
}

# Waits until node $1's /health is 200. A node that exits because its name
# is still taken (it was killed less than 10 s ago) is started again until
# the name is free.
wait_node() {
    local n=$1 pid
    local deadline=$((SECONDS + wait_node)) name_deadline=$((SECONDS + wait_name))
    while ((SECONDS < deadline)); do
        pid=$(pid_of "node-$n")
        if ! is_ours "$pid" "--node node-$n"; then
            if tail -n 2 "$state/node-$n.log" | grep -q taken && ((SECONDS < name_deadline)); then
                # The name of a node killed a moment ago is free 10 s after
                # its death: try again in a second.
                sleep 1
                launch_node "$n"
                continue
            fi
            tail_of "$state/node-$n.log"
            die "node-$n exited (the end of its log is above)"
        fi
        http_get "710$n" /health
        [[ $http_status == 200 ]] && return 0
        sleep 0.1
    done
    tail_of "$state/node-$n.log"
    die "node-$n's /health (127.0.0.1:710$n) is not 200 after $wait_node s"
}

start_haproxy() {
    command -v haproxy >/dev/null || die "HAProxy is not installed: apt-get install haproxy"
    haproxy -c -q -f "$here/haproxy.cfg" || die "HAProxy rejects $here/haproxy.cfg (errors above)"
    # -db: stay in the foreground (of this background job), log to the file.
    nohup haproxy -db -f "$here/haproxy.cfg" </dev/null >"$state/haproxy.log" 2>&1 &
    printf '%s\n' "$!" >"$state/haproxy.pid"
    local line deadline=$((SECONDS + wait_haproxy))
    while ((SECONDS < deadline)); do
        is_ours "$(pid_of haproxy)" haproxy || {
            tail_of "$state/haproxy.log"
            die "HAProxy exited (its log is above)"
        }
        line=$(first_line "$front_port")
        [[ $line == "HELLO charla "* ]] && return 0
        sleep 0.1
    done
    tail_of "$state/haproxy.log"
    die "HAProxy on 127.0.0.1:$front_port does not pass connections to a node after $wait_haproxy s"
}

# --- commands ---------------------------------------------------------------

running() {
    [[ -d $state ]] || return 1
    local name
    for name in haproxy node-1 node-2 node-3; do
        is_ours "$(pid_of "$name")" "${name/node-/--node node-}" && return 0
    done
    [[ -f $state/pgdir && -f $(cat "$state/pgdir")/data/postmaster.pid ]]
}

cmd_up() {
    if running; then
        die "a cluster is already running (state in $state): deploy/cluster.sh down first"
    fi
    rm -rf "$state"
    mkdir -p "$(dirname "$state")"
    mkdir -m 700 "$state"
    local port pgbin server
    for port in "$pgport" "$front_port" "$stats_port" 7001 7002 7003 7101 7102 7103; do
        listening "$port" && die "127.0.0.1:$port is already in use (by another program or an older cluster)"
    done
    command -v haproxy >/dev/null || die "HAProxy is not installed: apt-get install haproxy"
    pgbin=$(find_pg_bin)
    server=$(server_binary)
    printf '%s\n' "$server" >"$state/server"
    printf '%s\n' "${CHARLA_NODE_ARGS:-}" >"$state/node-args"
    # From here on, a failure stops whatever was started.
    trap 'status=$?; if ((status != 0)); then warn "up failed: stopping what was started"; cmd_down >&2 || true; fi' EXIT
    start_postgres "$pgbin"
    local n
    for n in "${nodes[@]}"; do
        say "node-$n: starting on 127.0.0.1:700$n (health 127.0.0.1:710$n)"
        launch_node "$n"
    done
    for n in "${nodes[@]}"; do
        wait_node "$n"
    done
    say "HAProxy: starting on 127.0.0.1:$front_port"
    start_haproxy
    trap - EXIT
    cat <<EOF

The cluster is up: PostgreSQL 127.0.0.1:$pgport (database charla), three
charla nodes, HAProxy on 127.0.0.1:$front_port.

Connect (each session goes to the node with the fewest):
    target/release/charla --server 127.0.0.1:$front_port
    nc 127.0.0.1 $front_port

Health:
    http://127.0.0.1:7101/health   http://127.0.0.1:7102/health   http://127.0.0.1:7103/health
    http://127.0.0.1:7101/health/nodes
    HAProxy's view: http://127.0.0.1:$stats_port/
    deploy/cluster.sh status

Logs: $state/*.log
Stop: deploy/cluster.sh down
EOF
}

cmd_down() {
    if [[ ! -d $state ]]; then
        say "no cluster to stop (no $state)"
        return 0
    fi
    local n
    # Nodes first, in order (SIGTERM: BYE shutting-down to every session),
    # then the balancer in front of them, then the database behind them.
    for n in "${nodes[@]}"; do
        stop_pid "node-$n" "--node node-$n"
    done
    stop_pid haproxy haproxy
    stop_postgres
    rm -rf "$state"
    say "the cluster is down"
}

cmd_status() {
    [[ -d $state ]] || {
        say "no cluster (no $state): deploy/cluster.sh up"
        return 1
    }
    local n ok=0 pid
    for n in "${nodes[@]}"; do
        pid=$(pid_of "node-$n")
        http_get "710$n" /health
        if is_ours "$pid" "--node node-$n"; then
            printf 'node-%s  pid %-7s  %s  %s\n' "$n" "$pid" "$http_status" "$http_body"
        else
            printf 'node-%s  not running    %s  %s\n' "$n" "$http_status" "$http_body"
        fi
        [[ $http_status == 200 ]] || ok=1
    done
    for n in "${nodes[@]}"; do
        http_get "710$n" /health/nodes
        if [[ $http_status == 200 ]]; then
            say "live nodes (as node-$n sees them): $http_body"
            break
        fi
    done
    pid=$(pid_of haproxy)
    if is_ours "$pid" haproxy; then
        http_get "$stats_port" '/;csv'
        # pxname,svname,qcur,qmax,scur,... status is the 18th field.
        say "HAProxy (pid $pid) on 127.0.0.1:$front_port sees:"
        awk -F, '$1 == "nodes" && $2 ~ /^node-/ { printf "    %s  %s  %s sessions\n", $2, $18, $5 }' <<<"$http_body"
    else
        say "HAProxy: not running"
        ok=1
    fi
    if "$(cat "$state/pgbin")/pg_isready" -q -h 127.0.0.1 -p "$(cat "$state/pgport")"; then
        say "PostgreSQL: accepting connections on 127.0.0.1:$(cat "$state/pgport")"
    else
        say "PostgreSQL: not answering on 127.0.0.1:$(cat "$state/pgport")"
        ok=1
    fi
    return "$ok"
}

node_number() {
    [[ ${1:-} =~ ^[123]$ ]] || die "which node? 1, 2 or 3"
    [[ -d $state ]] || die "no cluster (no $state): deploy/cluster.sh up"
}

cmd_stop_node() {
    node_number "${1:-}"
    local n=$1 pid
    pid=$(pid_of "node-$n")
    is_ours "$pid" "--node node-$n" || die "node-$n is not running"
    if [[ ${2:-} == --kill ]]; then
        kill -KILL "$pid"
        wait_gone "$pid" "--node node-$n" 5 || die "node-$n (pid $pid) survives kill -9"
        say "killed node-$n (pid $pid, kill -9); its name is free again 10 s after its death"
    else
        stop_pid "node-$n" "--node node-$n"
    fi
    rm -f "$state/node-$n.pid"
}

cmd_start_node() {
    node_number "${1:-}"
    local n=$1
    is_ours "$(pid_of "node-$n")" "--node node-$n" && die "node-$n is already running"
    say "node-$n: starting on 127.0.0.1:700$n (health 127.0.0.1:710$n)"
    launch_node "$n"
    wait_node "$n"
    say "node-$n is up; HAProxy sends it new sessions within 2 s"
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop-node) cmd_stop_node "${2:-}" "${3:-}" ;;
    start-node) cmd_start_node "${2:-}" ;;
    *) usage ;;
esac
