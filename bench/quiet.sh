# Shared by the benchmark scripts (sourced, not run): waiting for a quiet
# machine before each run, and logging the conditions of each run in
# $OUT/conditions.log. Needs OUT set; QUIET_WAIT=1 turns the waiting on.

# Percent of the machine's CPU time busy over 2 seconds (all processes).
busy_pct() {
    local u n sy id io irq sirq st b0 t0
    read -r _ u n sy id io irq sirq st _ </proc/stat; b0=$((u + n + sy + irq + sirq + st)); t0=$((b0 + id + io))
    sleep 2
    read -r _ u n sy id io irq sirq st _ </proc/stat; b0=$((u + n + sy + irq + sirq + st - b0)); t0=$((u + n + sy + irq + sirq + st + id + io - t0))
    echo $((100 * b0 / (t0 > 0 ? t0 : 1)))
}
conditions() { echo "$(date +%T) $1 load1=$(cut -d' ' -f1 /proc/loadavg) busy=${2:-?}% rustc=$(pgrep -cx rustc || true)" >>"$OUT/conditions.log"; }
BUSY=?
wait_quiet() {
    [ "${QUIET_WAIT:-0}" = 1 ] || return 0
    for _ in $(seq 40); do
        BUSY=$(busy_pct)
        if ! pgrep -x rustc >/dev/null && [ "$BUSY" -le 20 ]; then return 0; fi
        echo "$(date +%T) machine busy (${BUSY}%) or a compiler running; waiting 30 s" >&2
        sleep 28
    done
}
