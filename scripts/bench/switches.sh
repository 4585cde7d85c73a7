# shellcheck shell=bash
# Starting and stopping the switches that scripts/bench-switches compares.
#
# A switch instance has an ID and a state directory $WORK/sw/ID holding its
# kind, lab, node, the PIDs whose CPU time is its cost, and what it reported.
# Every instance joins the ports vNp1 (OpenFlow port 1) and vNp2 (port 2) of
# node N of a lab made by scripts/oxvs-lab:
#
#   oxvsd   the release build, AF_XDP ports (kind auto), poll thread on core 1
#   ovs     a private ovsdb-server + ovs-vswitchd (userspace datapath, afxdp
#           ports, PMD on core 1) with their own run/db/log directories
#   bridge  a Linux bridge br0 in the node namespace (the kernel baseline)
#
# Daemons are started with `oxvs-lab spawn`, so `oxvs-lab down` is a second
# line of defence; the first is stop_pid on the recorded PIDs.
#
# Sourced, not run. Expects WORK, LAB_SCRIPT, OXVSD and the helpers of
# common.sh.

readonly POLL_CORE=1
readonly PMD_MASK=0x2 # core 1
readonly OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
# Tried in order, the first that OVS accepts wins and is recorded, and so
# are the refusals. OVS 3.1 knows best-effort, native-with-zerocopy, native
# and generic: "native-with-copy" is refused ("Incorrect xdp-mode") and kept
# first only so that the record shows it; "native" is native copy mode on
# veth (which cannot do zero-copy).
readonly OVS_XDP_MODES="native-with-copy native best-effort generic"

sw_dir() { echo "$WORK/sw/$1"; }
sw_get() { cat "$WORK/sw/$1/$2" 2>/dev/null || true; }
sw_pids() { sw_get "$1" pids | paste -sd ' '; }
sw_ns() { echo "$(sw_get "$1" lab)-n$(sw_get "$1" node)"; }
sw_ports() { local n; n=$(sw_get "$1" node) && echo "v${n}p1 v${n}p2"; }

# Whether every process of the instance still runs.
sw_alive() {
    local pid
    while read -r pid; do
        tracked_alive "$pid" || return 1
    done < <(sw_get "$1" pids)
}

sw_error() {
    say "$1: $2"
    printf '%s\n' "$2" >>"$(sw_dir "$1")/errors"
}

# sw_start ID KIND VARIANT LAB NODE
sw_start() {
    local id=$1 kind=$2 variant=$3 lab=$4 node=$5 d
    d=$(sw_dir "$id")
    rm -rf "$d"
    mkdir -p "$d"
    echo "$kind" >"$d/kind"
    echo "$variant" >"$d/variant"
    echo "$lab" >"$d/lab"
    echo "$node" >"$d/node"
    : >"$d/pids"
    : >"$d/attach"
    case $kind in
        oxvsd) oxvsd_start "$id" ;;
        ovs) ovs_start "$id" ;;
        bridge) bridge_start "$id" ;;
        *) die "unknown switch kind $kind" ;;
    esac
}

sw_stop() {
    [[ -f $(sw_dir "$1")/kind ]] || return 0
    case $(sw_get "$1" kind) in
        oxvsd) oxvsd_stop "$1" ;;
        ovs) ovs_stop "$1" ;;
        bridge) bridge_stop "$1" ;;
    esac
    scrub_ports "$1"
}

# The flow table of a variant, in ovs-ofctl syntax (oxvsd reads the same).
flows_of() {
    case $1 in
        flows | fastpath) if ((${CONNTRACK:-0})); then ct_flows; else
            printf 'in_port=1,actions=output:2\nin_port=2,actions=output:1\n'
        fi ;;
        normal) printf 'actions=NORMAL\n' ;;
    esac
}

# Port to port through a stateful firewall (bench-switches --conntrack).
ct_flows() {
    cat <<'EOF'
table=0,priority=100,ip,actions=ct(table=1,zone=1)
table=0,priority=10,in_port=1,actions=output:2
table=0,priority=10,in_port=2,actions=output:1
table=1,priority=200,ct_state=+inv+trk,ip,actions=drop
table=1,priority=100,ct_state=+new+trk,ip,actions=ct(commit,table=2,zone=1)
table=1,priority=90,ct_state=+est+trk,ip,actions=resubmit(,2)
table=2,priority=10,in_port=1,actions=output:2
table=2,priority=10,in_port=2,actions=output:1
EOF
}

oxvsd_start() {
    local id=$1 d lab node pid i log
    d=$(sw_dir "$id")
    lab=$(sw_get "$id" lab)
    node=$(sw_get "$id" node)
    flows_of "$(sw_get "$id" variant)" | sed 's/NORMAL/normal/' >"$d/node.flows"
    local fast=off
    [[ $(sw_get "$id" variant) == fastpath ]] && fast=on
    cat >"$d/node.toml" <<EOF
[switch]
flows = "node.flows"
log = "info"
poll_cores = [$POLL_CORE]
fast_path = "$fast"

[[port]]
name = "v${node}p1"
no = 1
kind = "auto"

[[port]]
name = "v${node}p2"
no = 2
kind = "auto"
EOF
    pid=$(logged "start oxvsd" "$LAB_SCRIPT" spawn --name "$lab" "n$node" "oxvsd-$id" \
        "$OXVSD" --config "$d/node.toml") || {
        sw_error "$id" "oxvs-lab spawn of oxvsd failed"
        return 1
    }
    track "$pid"
    echo "$pid" >"$d/pids"
    log=/run/oxvs-lab/$lab/oxvsd-$id.log
    echo "$log" >"$d/log"
    for ((i = 0; i < 200; i++)); do
        (($(grep -c 'port up' "$log" 2>/dev/null) >= 2)) && break
        if ! sw_alive "$id"; then
            sw_error "$id" "oxvsd exited during start: $(tail -n 5 "$log" | paste -sd '|')"
            return 1
        fi
        sleep 0.05
    done
    sed -n 's/.*port up port=\([^ ]*\) .*mode=\(.*\)$/\1: \2/p' "$log" | paste -sd ';' >"$d/attach"
    if (($(grep -c 'port up' "$log") < 2)); then
        sw_error "$id" "oxvsd did not bring both ports up in 10 s: $(tail -n 5 "$log" | paste -sd '|')"
        return 1
    fi
}

oxvsd_stop() {
    local id=$1 d pid log stats
    d=$(sw_dir "$id")
    log=$(sw_get "$id" log)
    pid=$(sw_pids "$id")
    if [[ -n $pid ]] && ! sw_alive "$id"; then
        sw_error "$id" "oxvsd had exited before it was stopped (crash?): $(tail -n 8 "$log" | paste -sd '|')"
    fi
    [[ -z $pid ]] || stop_pid "$pid" 5
    cp "$log" "$d/oxvsd.log" 2>/dev/null || true
    grep -q 'oxvsd stopped' "$d/oxvsd.log" 2>/dev/null ||
        sw_error "$id" "oxvsd did not log a clean stop after SIGTERM: $(tail -n 5 "$d/oxvsd.log" 2>/dev/null | paste -sd '|')"
    # "poll thread stopped rx=.. emc_hit=.. megaflow_hit=.. upcall=.. drops=.. port_down=..":
    # the counters of the whole session.
    # With the fast path, "fast path stopped fastpath_hit=.. fastpath_seen=..": its totals.
    stats=$(sed -n 's/.*poll thread stopped //p' "$d/oxvsd.log" 2>/dev/null | tail -n 1)
    stats="$stats $(sed -n 's/.*fast path stopped //p' "$d/oxvsd.log" 2>/dev/null | tail -n 1)"
    if [[ -n ${stats// /} ]]; then
        tr ' ' '\n' <<<"$stats" | jq -Rn '[inputs | select(contains("=")) | split("=")
            | {key: .[0], value: (.[1] | tonumber? // .)}] | from_entries' >"$d/exit_stats.json"
    fi
}

# ovsctl ID ARGS...: ovs-vsctl against the instance's own database.
ovsctl() {
    local d
    d=$(sw_dir "$1")
    shift
    logged ovs-vsctl ovs-vsctl --db="unix:$d/run/db.sock" --timeout=20 "$@"
}

wait_socket() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        [[ -S $1 ]] && return 0
        sleep 0.05
    done
    return 1
}

ovs_env() {
    local d=$1
    echo "OVS_RUNDIR=$d/run" "OVS_DBDIR=$d/db" "OVS_LOGDIR=$d/log" "OVS_SYSCONFDIR=$d/etc"
}

ovs_start() {
    local id=$1 d lab node pid p no mode err ofport envs=() flow
    d=$(sw_dir "$id")
    lab=$(sw_get "$id" lab)
    node=$(sw_get "$id" node)
    mkdir -p "$d/run" "$d/db" "$d/log" "$d/etc"
    read -ra envs <<<"$(ovs_env "$d")"
    logged ovsdb-tool ovsdb-tool create "$d/db/conf.db" "$OVS_SCHEMA" || {
        sw_error "$id" "ovsdb-tool create failed"
        return 1
    }
    # No --detach: the PID spawn reports is the daemon itself.
    pid=$(logged "start ovsdb-server" "$LAB_SCRIPT" spawn --name "$lab" "n$node" "ovsdb-$id" \
        env "${envs[@]}" ovsdb-server "$d/db/conf.db" --remote="punix:$d/run/db.sock" \
        --pidfile="$d/run/ovsdb-server.pid" --unixctl="$d/run/ovsdb-server.ctl" \
        --log-file="$d/log/ovsdb-server.log" --no-chdir) || {
        sw_error "$id" "spawn of ovsdb-server failed"
        return 1
    }
    track "$pid"
    echo "$pid" >>"$d/pids"
    wait_socket "$d/run/db.sock" 5 || {
        sw_error "$id" "ovsdb-server did not open its socket: $(tail -n 3 "$d/log/ovsdb-server.log" 2>/dev/null | paste -sd '|')"
        return 1
    }
    if ! ovsctl "$id" --no-wait init >/dev/null ||
        ! ovsctl "$id" --no-wait set Open_vSwitch . "other_config:pmd-cpu-mask=$PMD_MASK"; then
        sw_error "$id" "ovs-vsctl init or pmd-cpu-mask failed"
        return 1
    fi
    pid=$(logged "start ovs-vswitchd" "$LAB_SCRIPT" spawn --name "$lab" "n$node" "vswitchd-$id" \
        env "${envs[@]}" ovs-vswitchd "unix:$d/run/db.sock" --pidfile="$d/run/ovs-vswitchd.pid" \
        --unixctl="$d/run/ovs-vswitchd.ctl" --log-file="$d/log/ovs-vswitchd.log" --no-chdir) || {
        sw_error "$id" "spawn of ovs-vswitchd failed"
        return 1
    }
    track "$pid"
    echo "$pid" >>"$d/pids"
    wait_socket "$d/run/ovs-vswitchd.ctl" 10 || {
        sw_error "$id" "ovs-vswitchd did not open its control socket: $(tail -n 3 "$d/log/ovs-vswitchd.log" 2>/dev/null | paste -sd '|')"
        return 1
    }
    ovsctl "$id" add-br br0 -- set bridge br0 datapath_type=netdev >/dev/null || {
        sw_error "$id" "add-br br0 (datapath_type=netdev) failed"
        return 1
    }
    no=0
    for p in $(sw_ports "$id"); do
        no=$((no + 1))
        for mode in $OVS_XDP_MODES; do
            ovsctl "$id" --may-exist add-port br0 "$p" -- set interface "$p" type=afxdp \
                "options:xdp-mode=$mode" "ofport_request=$no" >/dev/null 2>>"$d/vsctl.err" || true
            err=$(ovsctl "$id" --if-exists get interface "$p" error 2>/dev/null || true)
            ofport=$(ovsctl "$id" --if-exists get interface "$p" ofport 2>/dev/null || true)
            if [[ $ofport == "$no" && ( -z $err || $err == '[]' || $err == '""' ) ]]; then
                printf '%s: afxdp xdp-mode=%s\n' "$p" "$mode" >>"$d/attach.lines"
                break
            fi
            printf '%s: xdp-mode=%s failed: %s\n' "$p" "$mode" "$err" >>"$d/attach.failed"
        done
    done
    paste -sd ';' "$d/attach.lines" >"$d/attach" 2>/dev/null || true
    if (($(wc -l <"$d/attach.lines" 2>/dev/null || echo 0) < 2)); then
        sw_error "$id" "afxdp ports did not come up: $(paste -sd '|' "$d/attach.failed" 2>/dev/null)"
        return 1
    fi
    logged ovs-ofctl ovs-ofctl del-flows "unix:$d/run/br0.mgmt" || return 1
    while read -r flow; do
        logged ovs-ofctl ovs-ofctl add-flow "unix:$d/run/br0.mgmt" "$flow" || {
            sw_error "$id" "ovs-ofctl add-flow $flow failed"
            return 1
        }
    done < <(flows_of "$(sw_get "$id" variant)")
}

ovs_stop() {
    local id=$1 d pid
    d=$(sw_dir "$id")
    if [[ -s $d/pids ]] && ! sw_alive "$id"; then
        sw_error "$id" "an OVS daemon had exited before it was stopped: $(tail -n 5 "$d/log/ovs-vswitchd.log" 2>/dev/null | paste -sd '|')"
    fi
    # Deleting the bridge makes ovs-vswitchd remove its XDP programs (it
    # attaches them through netlink, so a killed vswitchd would leave them).
    if [[ -S $d/run/db.sock ]]; then
        ovsctl "$id" --if-exists del-br br0 >/dev/null 2>&1 || true
    fi
    # ovs-vswitchd first (it holds the ports), then ovsdb-server.
    for pid in $(tac "$d/pids"); do
        stop_pid "$pid" 5
    done
    grep -h 'Setting XDP mode to' "$d/log/ovs-vswitchd.log" 2>/dev/null |
        sed 's/.*netdev_afxdp|INFO|//' | sort -u | paste -sd ';' >"$d/xdp_log" || true
}

bridge_start() {
    local id=$1 ns p
    ns=$(sw_ns "$id")
    logged bridge ip -n "$ns" link add br0 type bridge stp_state 0 forward_delay 0 || {
        sw_error "$id" "cannot create br0 in $ns"
        return 1
    }
    ip -n "$ns" link set br0 addrgenmode none
    for p in $(sw_ports "$id"); do
        logged bridge ip -n "$ns" link set "$p" master br0 || return 1
    done
    ip -n "$ns" link set br0 up
    echo "linux bridge (kernel)" >"$(sw_dir "$id")/attach"
}

bridge_stop() {
    ip -n "$(sw_ns "$1")" link del br0 2>/dev/null || true
}

# After a switch: no XDP program and no promiscuous mode left on its ports,
# so the next switch starts from the lab's clean state. Anything found is
# reported, then removed.
scrub_ports() {
    local id=$1 ns p i
    ns=$(sw_ns "$id")
    for p in $(sw_ports "$id"); do
        # oxvsd's program goes with its BPF link once the process is gone,
        # which can take a moment after exit.
        for ((i = 0; i < 40; i++)); do
            ip -n "$ns" -d link show dev "$p" 2>/dev/null | grep -qE ' xdp(generic)? |prog/xdp' || break
            sleep 0.05
        done
        if ip -n "$ns" -d link show dev "$p" 2>/dev/null | grep -qE ' xdp(generic)? |prog/xdp'; then
            sw_error "$id" "XDP program left on $p after the switch stopped; removing it"
            ip -n "$ns" link set dev "$p" xdp off 2>/dev/null || true
        fi
        if ip -n "$ns" link show dev "$p" 2>/dev/null | grep -q PROMISC; then
            echo "$p left in promiscuous mode" >>"$(sw_dir "$id")/notes"
            ip -n "$ns" link set dev "$p" promisc off 2>/dev/null || true
        fi
    done
}
