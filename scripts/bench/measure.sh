# shellcheck shell=bash
# The measurements of scripts/bench-switches. Each writes one JSON object to
# the file it is given; a measurement that cannot run writes {"error": ...}
# or {"skipped": ...} instead of stopping the run.
#
# Traffic always goes from pod 1 to pod 2 of the switch instance's node:
# LAB-nN-p1 (10.244.N.2) -> LAB-nN-p2 (10.244.N.3).
#
# Sourced, not run. Expects WORK, CLK_TCK, PKTGEN, PKTGEN_SKIP, PPS_FLOWS and
# the helpers of common.sh and switches.sh.

pod_ns() { echo "$(sw_get "$1" lab)-n$(sw_get "$1" node)-p$2"; }
pod_ip() { echo "10.244.$(sw_get "$1" node).$(($2 + 1))"; }
pod_mac() { printf '02:00:00:%02x:00:%02x' "$(sw_get "$1" node)" "$2"; }

err_json() {
    jq -cn --arg e "$1" '{error: $e}'
}

# Pings in both directions until one gets through (learning switches learn
# both MACs, the pods resolve each other's address). Fails after ~10 s.
warmup() {
    local id=$1 i
    for ((i = 0; i < 10; i++)); do
        if ip netns exec "$(pod_ns "$id" 1)" ping -c 1 -W 1 "$(pod_ip "$id" 2)" >/dev/null 2>&1 &&
            ip netns exec "$(pod_ns "$id" 2)" ping -c 1 -W 1 "$(pod_ip "$id" 1)" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

# ping_json TXT: the figures of one ping run: loss, ping's own
# min/avg/max/mdev, and the median and 90th percentile of the per-packet times.
ping_json() {
    local txt=$1 sent recv rtt times
    sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$txt")
    recv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$txt")
    rtt=$(sed -n 's|^rtt min/avg/max/mdev = \([0-9./]*\) ms.*|\1|p' "$txt")
    times=$(grep -o 'time=[0-9.]*' "$txt" | cut -d= -f2 | sort -g | paste -sd ' ')
    jq -cn --arg sent "${sent:-0}" --arg recv "${recv:-0}" --arg rtt "$rtt" --arg times "$times" '
        ($times | split(" ") | map(select(length > 0) | tonumber)) as $t
        | ($t | length) as $n
        | ($rtt | split("/") | map(tonumber)) as $r
        | {sent: ($sent | tonumber), received: ($recv | tonumber),
           loss_pct: (if ($sent | tonumber) > 0
                      then (1 - ($recv | tonumber) / ($sent | tonumber)) * 1000 | round / 10
                      else null end),
           min_ms: $r[0], avg_ms: $r[1], max_ms: $r[2], mdev_ms: $r[3],
           median_ms: (if $n == 0 then null
                       elif $n % 2 == 1 then $t[($n - 1) / 2]
                       else ($t[$n / 2 - 1] + $t[$n / 2]) / 2 * 10000 | round / 10000 end),
           p90_ms: (if $n == 0 then null else $t[(($n * 0.9) | ceil) - 1] end)}'
}

# ping_cmd ID: the ping of every RTT measurement (pod 1 -> pod 2).
ping_cmd() {
    echo ip netns exec "$(pod_ns "$1" 1)" ping -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "$(pod_ip "$1" 2)"
}

measure_ping() {
    local id=$1 out=$2 txt cmd=()
    txt=${out%.json}.txt
    read -ra cmd <<<"$(ping_cmd "$id")"
    logged ping "${cmd[@]}" >"$txt" 2>&1 || true
    ping_json "$txt" >"$out"
}

# iperf_server ID: iperf3 in pod 2 for one test, waited for until it listens.
iperf_server() {
    local id=$1 ns i
    ns=$(pod_ns "$id" 2)
    bg "$WORK/iperf-server-$id.log" ip netns exec "$ns" iperf3 -s -1 -p 5201
    for ((i = 0; i < 60; i++)); do
        ip netns exec "$ns" ss -Hltn 'sport = :5201' 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# measure_iperf ID SECONDS OUT: TCP pod 1 -> pod 2, with the switch's CPU and
# the node-side veths' drop counters over the same window.
measure_iperf() {
    local id=$1 secs=$2 out=$3 ns srv c0 c1 w0 w1 s0 s1 d0 d1 res
    ns=$(sw_ns "$id")
    if ! iperf_server "$id"; then
        err_json "iperf3 server did not listen" >"$out"
        return 0
    fi
    srv=$BG_PID
    # shellcheck disable=SC2046 # PIDs split into arguments
    {
        d0=$(veth_drops "$ns" $(sw_ports "$id"))
        c0=$(cpu_sample $(sw_pids "$id"))
        s0=$(sys_busy_ticks)
        w0=$(now_ns)
        logged iperf3 ip netns exec "$(pod_ns "$id" 1)" iperf3 -c "$(pod_ip "$id" 2)" -p 5201 \
            -t "$secs" -J >"${out%.json}.iperf3.json" 2>/dev/null || true
        w1=$(now_ns)
        s1=$(sys_busy_ticks)
        c1=$(cpu_sample $(sw_pids "$id"))
        d1=$(veth_drops "$ns" $(sw_ports "$id"))
    }
    stop_pid "$srv" 2
    # shellcheck disable=SC2086 # "TICKS NS" pairs split into arguments
    res=$(cpu_json ${c0% *} ${c0#* } ${c1% *} ${c1#* } "$w0" "$w1" "$s0" "$s1")
    jq -c --argjson cpu "$res" --argjson drops "$((d1 - d0))" '
        if .error then {error: .error}
        else {gbit_s: (.end.sum_received.bits_per_second / 1e9 * 1000 | round / 1000),
              sender_gbit_s: (.end.sum_sent.bits_per_second / 1e9 * 1000 | round / 1000),
              retransmits: .end.sum_sent.retransmits,
              seconds: (.end.sum_received.seconds * 100 | round / 100)} end
        + {node_veth_rx_drops: $drops, cpu: $cpu}' "${out%.json}.iperf3.json" >"$out" 2>/dev/null ||
        err_json "iperf3 gave no result: $(head -c 300 "${out%.json}.iperf3.json" 2>/dev/null)" >"$out"
}

# measure_idle ID SECONDS OUT: the switch's CPU with no traffic at all.
measure_idle() {
    local id=$1 secs=$2 out=$3 c0 c1 w0 w1 s0 s1
    sleep 1 # let the last packets of the previous measurement drain
    # shellcheck disable=SC2046 # PIDs split into arguments
    {
        c0=$(cpu_sample $(sw_pids "$id"))
        s0=$(sys_busy_ticks)
        w0=$(now_ns)
        sleep "$secs"
        w1=$(now_ns)
        s1=$(sys_busy_ticks)
        c1=$(cpu_sample $(sw_pids "$id"))
    }
    # shellcheck disable=SC2086
    cpu_json ${c0% *} ${c0#* } ${c1% *} ${c1#* } "$w0" "$w1" "$s0" "$s1" >"$out"
}

# The generator and the receiver run on core 0, the switch (or the
# reflector standing in for it) alone on core 1.
readonly PKTGEN_CORE=0

# pktgen_tx_cmd ID SECONDS JSON: 64-byte UDP frames from pod 1 to pod 2 as fast
# as the generator can.
pktgen_tx_cmd() {
    echo "$PKTGEN" tx --netns "$(pod_ns "$1" 1)" --dev eth0 --dst-mac "$(pod_mac "$1" 2)" \
        --src-ip "$(pod_ip "$1" 1)" --dst-ip "$(pod_ip "$1" 2)" --size 64 --flows "$PPS_FLOWS" \
        --rate 0 --duration "$2" --core "$PKTGEN_CORE" --quiet --json "$3"
}

# wait_ready LOG PID: until oxvs-pktgen says its port is open (at most 5 s).
wait_ready() {
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q 'ready on' "$1" 2>/dev/null && return 0
        tracked_alive "$2" || return 1
        sleep 0.05
    done
    return 1
}

# measure_pps ID SECONDS OUT: a receiver in pod 2 (started first, stopped
# last), the generator in pod 1; delivered pps = what the receiver counted /
# the generator's seconds; CPU-us per packet = the switch's CPU time over the
# generator's run / packets delivered (and the same for the whole machine,
# which includes the generator, the receiver and the kernel's veth work).
measure_pps() {
    local id=$1 secs=$2 out=$3 base rx c0 c1 w0 w1 s0 s1 d0 d1 cmd=() rc=0 cpu
    if [[ -n $PKTGEN_SKIP ]]; then
        jq -cn --arg s "$PKTGEN_SKIP" '{skipped: $s}' >"$out"
        return 0
    fi
    base=${out%.json}
    rm -f "$base.tx.json" "$base.rx.json"
    bg "$base.rx.log" "$PKTGEN" rx --netns "$(pod_ns "$id" 2)" --dev eth0 \
        --duration "$((secs + 2))" --core "$PKTGEN_CORE" --quiet --json "$base.rx.json"
    rx=$BG_PID
    wait_ready "$base.rx.log" "$rx" || say "$id: oxvs-pktgen rx did not say it was ready"
    read -ra cmd <<<"$(pktgen_tx_cmd "$id" "$secs" "$base.tx.json")"
    # shellcheck disable=SC2046 # PIDs split into arguments
    {
        d0=$(veth_drops "$(sw_ns "$id")" $(sw_ports "$id"))
        c0=$(cpu_sample $(sw_pids "$id"))
        s0=$(sys_busy_ticks)
        w0=$(now_ns)
        logged pktgen "${cmd[@]}" >"$base.tx.log" 2>&1 || rc=$?
        w1=$(now_ns)
        s1=$(sys_busy_ticks)
        c1=$(cpu_sample $(sw_pids "$id"))
        d1=$(veth_drops "$(sw_ns "$id")" $(sw_ports "$id"))
    }
    # The receiver stops by itself after its duration.
    local i
    for ((i = 0; i < 100; i++)); do
        tracked_alive "$rx" || break
        sleep 0.1
    done
    stop_pid "$rx" 2
    # shellcheck disable=SC2086
    cpu=$(cpu_json ${c0% *} ${c0#* } ${c1% *} ${c1#* } "$w0" "$w1" "$s0" "$s1")
    if [[ ! -s $base.tx.json || ! -s $base.rx.json ]]; then
        jq -cn --arg e "pktgen tx exit $rc; tx: $(tail -c 300 "$base.tx.log" 2>/dev/null); rx: $(tail -c 300 "$base.rx.log" 2>/dev/null)" \
            '{error: $e}' >"$out"
        return 0
    fi
    jq -cn --slurpfile tx "$base.tx.json" --slurpfile rx "$base.rx.json" --argjson cpu "$cpu" \
        --argjson drops "$((d1 - d0))" --argjson hz "$CLK_TCK" '
        $tx[0] as $t | $rx[0] as $r
        | {tx: $t, rx: $r,
           delivered_pps: (if $t.seconds > 0 then $r.packets / $t.seconds | round else null end),
           delivered_of_sent_pct: (if $t.packets > 0 then $r.packets / $t.packets * 1000 | round / 10 else null end),
           switch_cpu_us_per_pkt: (if $r.packets > 0 then $cpu.switch_cpu_s * 1e6 / $r.packets * 1000 | round / 1000 else null end),
           machine_cpu_us_per_pkt: (if $r.packets > 0
               then $cpu.machine_busy_pct_of_core / 100 * $cpu.window_s * 1e6 / $r.packets * 1000 | round / 1000
               else null end),
           node_veth_rx_drops: $drops, cpu: $cpu}' >"$out"
}

# measure_reflect LAB SECONDS OUT: the I/O ceiling without a switch: a bare
# AF_XDP reflector on v1p1 (the switch side of pod 1's veth) sends back what
# pod 1's generator sends.
measure_reflect() {
    local lab=$1 secs=$2 out=$3 base refl cmd=() rc=0 i
    if [[ -n $PKTGEN_SKIP ]]; then
        jq -cn --arg s "$PKTGEN_SKIP" '{skipped: $s}' >"$out"
        return 0
    fi
    base=${out%.json}
    rm -f "$base.tx.json" "$base.reflect.json"
    # A pseudo-instance so that the pod helpers name the lab's node 1.
    mkdir -p "$WORK/sw/reflect"
    echo "$lab" >"$WORK/sw/reflect/lab"
    echo 1 >"$WORK/sw/reflect/node"
    : >"$WORK/sw/reflect/pids"
    bg "$base.reflect.log" "$PKTGEN" reflect --netns "$lab-n1" --dev v1p1 \
        --duration "$((secs + 2))" --core "$POLL_CORE" --quiet --json "$base.reflect.json"
    refl=$BG_PID
    wait_ready "$base.reflect.log" "$refl" || say "oxvs-pktgen reflect did not say it was ready"
    read -ra cmd <<<"$(pktgen_tx_cmd reflect "$secs" "$base.tx.json")"
    logged pktgen "${cmd[@]}" >"$base.tx.log" 2>&1 || rc=$?
    for ((i = 0; i < 100; i++)); do
        tracked_alive "$refl" || break
        sleep 0.1
    done
    stop_pid "$refl" 2
    if [[ ! -s $base.tx.json || ! -s $base.reflect.json ]]; then
        jq -cn --arg e "pktgen exit $rc; tx: $(tail -c 300 "$base.tx.log" 2>/dev/null); reflect: $(tail -c 300 "$base.reflect.log" 2>/dev/null)" \
            '{error: $e}' >"$out"
        return 0
    fi
    jq -cn --slurpfile tx "$base.tx.json" --slurpfile rf "$base.reflect.json" '
        $tx[0] as $t | $rf[0] as $r
        | {tx: $t, reflect: $r,
           reflected_pps: (if $t.seconds > 0 then $r.packets / $t.seconds | round else null end)}' >"$out"
}
