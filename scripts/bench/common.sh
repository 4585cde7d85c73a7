# shellcheck shell=bash
# Helpers for scripts/bench-switches: messages, the command log, tracked
# processes (killed by PID, never by name) and CPU counters.
#
# Sourced, not run. Expects WORK (the run's temporary directory) to be set.

say() {
    printf 'bench-switches: %s\n' "$*" >&2
}

die() {
    say "error: $*"
    exit 1
}

# logged TAG CMD...: records the exact command in the run's command log (it
# ends up in the JSON output), then runs it.
logged() {
    local tag=$1
    shift
    jq -cn --arg tag "$tag" --arg cmd "$(printf '%q ' "$@")" '{tag: $tag, cmd: ($cmd | rtrimstr(" "))}' \
        >>"$WORK/commands.jsonl"
    "$@"
}

# Fields of /proc/PID/stat after the command name (which may hold spaces and
# parentheses), into the array named by $2: index 0 is field 3 (state),
# 11 utime, 12 stime, 19 starttime.
stat_fields() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -ra "$2" <<<"${s##*) }"
}

start_time_of() {
    local f=()
    stat_fields "$1" f || return 1
    echo "${f[19]}"
}

# Whether PID is still the process that started at START (not a recycled PID,
# not a zombie waiting to be reaped).
same_alive() {
    local f=()
    stat_fields "$1" f || return 1
    [[ ${f[19]} == "$2" && ${f[0]} != Z && ${f[0]} != X ]]
}

# track PID: remember a process this run started, so that cleanup can stop it
# whatever happens. The start time makes the record name one process.
track() {
    local st
    st=$(start_time_of "$1") || return 0
    echo "$1 $st" >>"$WORK/pids"
}

# tracked_alive PID: whether a tracked process still runs.
tracked_alive() {
    local st
    st=$(awk -v p="$1" '$1 == p { s = $2 } END { print s }' "$WORK/pids" 2>/dev/null)
    [[ -n $st ]] && same_alive "$1" "$st"
}

# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL, only while PID is still
# the tracked process. Reaps it if it is our child. Prints nothing.
stop_pid() {
    local pid=$1 secs=${2:-5} st i
    st=$(awk -v p="$pid" '$1 == p { s = $2 } END { print s }' "$WORK/pids" 2>/dev/null)
    [[ -n $st ]] || st=$(start_time_of "$pid") || return 0
    if same_alive "$pid" "$st"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 20; i++)); do
            same_alive "$pid" "$st" || break
            sleep 0.05
        done
        if same_alive "$pid" "$st"; then
            say "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) ignored SIGTERM for ${secs}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops every tracked process still alive (cleanup path).
stop_all_tracked() {
    local pid st
    [[ -f $WORK/pids ]] || return 0
    while read -r pid st; do
        if same_alive "$pid" "$st"; then
            stop_pid "$pid" 3
        fi
    done <"$WORK/pids"
}

# bg OUTFILE CMD...: runs CMD in the background with stdout to OUTFILE,
# logs and tracks it; the PID is left in BG_PID.
BG_PID=
bg() {
    local out=$1
    shift
    jq -cn --arg cmd "$(printf '%q ' "$@")" '{tag: "background", cmd: ($cmd | rtrimstr(" "))}' \
        >>"$WORK/commands.jsonl"
    "$@" </dev/null >"$out" 2>&1 &
    BG_PID=$!
    track "$BG_PID"
}

# cpu_sample PID...: "TICKS NS" for the processes together: utime+stime
# (clock ticks, includes exited threads) from /proc/PID/stat, and the
# nanosecond on-CPU time of their live threads from schedstat.
cpu_sample() {
    local ticks=0 ns=0 pid f=() t v
    for pid in "$@"; do
        stat_fields "$pid" f || continue
        ticks=$((ticks + f[11] + f[12]))
        for t in /proc/"$pid"/task/*/schedstat; do
            read -r v _ <"$t" 2>/dev/null || continue
            ns=$((ns + v))
        done
    done
    echo "$ticks $ns"
}

# Busy clock ticks of the whole machine (every core) from /proc/stat.
sys_busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

now_ns() {
    date +%s%N
}

# cpu_json BEFORE_TICKS BEFORE_NS AFTER_TICKS AFTER_NS T0_NS T1_NS SYS0 SYS1:
# the CPU used in a window as JSON: seconds, percent of one core by ticks and
# by schedstat, and the machine's busy percent (all cores, 100 = one core).
cpu_json() {
    jq -cn --argjson t0 "$1" --argjson n0 "$2" --argjson t1 "$3" --argjson n1 "$4" \
        --argjson w0 "$5" --argjson w1 "$6" --argjson s0 "$7" --argjson s1 "$8" \
        --argjson hz "$CLK_TCK" '
        (($w1 - $w0) / 1e9) as $secs
        | {window_s: ($secs * 1000 | round / 1000),
           switch_cpu_s: ((($t1 - $t0) / $hz) * 1000 | round / 1000),
           switch_cpu_pct_of_core: (((($t1 - $t0) / $hz) / $secs * 100) * 100 | round / 100),
           switch_cpu_pct_of_core_schedstat: (((($n1 - $n0) / 1e9) / $secs * 100) * 100 | round / 100),
           machine_busy_pct_of_core: (((($s1 - $s0) / $hz) / $secs * 100) * 10 | round / 10)}'
}

# Sum of the per-queue drop counters (for veth: frames the XDP redirect to
# an AF_XDP socket could not deliver, among others) of interfaces in NS.
veth_drops() {
    local ns=$1 dev total=0 n
    shift
    for dev in "$@"; do
        n=$(ip netns exec "$ns" ethtool -S "$dev" 2>/dev/null |
            awk '/rx_queue_[0-9]+_drops:/ { s += $2 } END { print s + 0 }') || n=0
        total=$((total + n))
    done
    echo "$total"
}

# wait_quiet LIMIT_S: other people's builds and benchmarks share these cores.
# Waits until the whole machine was busy less than QUIET_PCT of one core over
# a second, for at most LIMIT_S seconds, and prints what it saw as JSON.
wait_quiet() {
    local limit=$1 t0 s0 s1 w0 w1 busy
    t0=$(now_ns)
    while :; do
        s0=$(sys_busy_ticks)
        w0=$(now_ns)
        sleep 1
        s1=$(sys_busy_ticks)
        w1=$(now_ns)
        busy=$(awk -v t="$((s1 - s0))" -v hz="$CLK_TCK" -v ns="$((w1 - w0))" \
            'BEGIN { printf "%.1f", t / hz / (ns / 1e9) * 100 }')
        if awk -v b="$busy" -v q="$QUIET_PCT" 'BEGIN { exit !(b < q) }' ||
            (($(now_ns) - t0 >= limit * 1000000000)); then
            break
        fi
    done
    jq -cn --argjson busy "$busy" --argjson waited "$((($(now_ns) - t0) / 1000000))" --argjson q "$QUIET_PCT" \
        '{machine_busy_pct_last_second: $busy, waited_s: ($waited / 1000), quiet_below_pct: $q,
          quiet: ($busy < $q)}'
}
