#!/usr/bin/env bash
# CanvasChat benchmarks: gateway vs. Centrifugo 6.9.1 vs. raw Redis pub/sub, and
# the operator against a local control plane. Prints a Markdown table; see bench/README.md.
#
#   bash bench/run.sh [--quick] [--no-operator] [--no-gateway] [--only GROUPS] [--gateway-bin PATH]
#                   [--out DIR]
#
# --gateway-bin PATH runs that gateway binary instead of the one built here (e.g. a copy kept
# from before a change, to compare before and after against the same peer).
# --only idle,storm runs only those gateway scenario groups (idle, fanout, 30k, history,
# ramp, channels, storm, connect-ramp, drain) and no operator part.
#
# Everything listens on free 127.0.0.1 ports and is stopped on exit. Every load is bounded in
# count and in time. Not part of the test command.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/canvaschat/target}
CACHE_DIR=$HOME/.cache/canvaschat/bench
BIN=$CARGO_TARGET_DIR/release

quick=false run_gateway=true run_operator=true out='' only='' gateway_bin=''
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=true ;;
        --no-operator) run_operator=false ;;
        --no-gateway) run_gateway=false ;;
        --out) out=$2; shift ;;
        --only) only=,$2,; run_operator=false; shift ;;
        --gateway-bin) gateway_bin=$2; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "bench: $*" >&2; }
want() { [ -z "$only" ] || [[ $only == *",$1,"* ]]; } # GROUP: runs unless --only leaves it out
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

work=$(mktemp -d /tmp/canvaschat-bench.XXXXXX)
out=${out:-$work}
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"

started_pids=()
controlplane_dir=
cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${started_pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2> /dev/null || true
    done
    if [ -n "$controlplane_dir" ]; then
        CANVASCHAT_CP_DIR=$controlplane_dir "$ROOT/tests/controlplane/down.sh" > /dev/null 2>&1 || true
    fi
    log "logs and raw results are in $work"
}
trap cleanup EXIT

# 10,000 idle connections need as many descriptors in the server and in the load generator.
ulimit -n 65536 2> /dev/null || ulimit -n "$(ulimit -Hn)"

# Sizes of the full run and of --quick.
if $quick; then
    IDLE_CONNS=2000 SECONDS_PER_LOAD=4 SATURATION_SECONDS=3 STORM_SECONDS=3 DRAIN_SECONDS=6 OPERATOR_MANY=20 RESYNC=10
    RAMP_STEPS=5
else
    IDLE_CONNS=10000 SECONDS_PER_LOAD=15 SATURATION_SECONDS=8 STORM_SECONDS=8 DRAIN_SECONDS=8 OPERATOR_MANY=100 RESYNC=15
    RAMP_STEPS=10
fi
RAMP_START_RATE=20      # saturation ramp: 2,000 deliveries/s first, x1.5 per step
FANOUT_RATE=50          # 1 sender -> 100 receivers: 5,000 deliveries/s
SATURATION_RATE=300     # the same at 30,000 deliveries/s offered, to see who keeps up
CHANNELS=200            # many small channels: 5 clients each
CHANNEL_CLIENTS=1000
CHANNEL_RATE=1000       # 4,000 deliveries/s
PAYLOAD=100             # bytes of chat text in every message, for all three systems

# --- build --------------------------------------------------------------------------
crates=(-p canvaschat-bench)
$run_gateway && crates+=(-p canvaschat-gateway)
$run_operator && crates+=(-p canvaschat-operator)
log "building release binaries (${crates[*]})"
(cd "$ROOT" && nice -n 10 cargo build --release --quiet "${crates[@]}")
LOADGEN=$BIN/canvaschat-bench

# The peer is the real Centrifugo 6.9.1 binary from ../shared/peers, checked against its
# published sha256 and unpacked once into the cache.
PEER_GZ=$ROOT/../shared/peers/centrifugo-6.9.1-linux-amd64.gz
PEER_SHA256=e66f902bc975a8ee5e9493178fb429071ac2d4d613c0f5f7f3673219e7353791
PEER=$CACHE_DIR/centrifugo-6.9.1
if $run_gateway && [ ! -x "$PEER" ]; then
    [ -f "$PEER_GZ" ] || { log "no Centrifugo at $PEER_GZ (../shared/peers)"; exit 1; }
    echo "$PEER_SHA256  $PEER_GZ" | sha256sum --check --quiet ||
        { log "$PEER_GZ does not match its published sha256"; exit 1; }
    mkdir -p "$CACHE_DIR"
    gunzip -c "$PEER_GZ" > "$PEER.partial" && chmod +x "$PEER.partial" && mv "$PEER.partial" "$PEER"
fi
$run_gateway && log "peer: $("$PEER" version | head -n 1)"

free_ports() { # N -> N distinct free loopback ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

wait_http() { # NAME PID URL: until URL answers 200, at most 30 s
    for _ in $(seq 150); do
        curl -fs --max-time 1 "$3" > /dev/null 2>&1 && return 0
        kill -0 "$2" 2> /dev/null || { log "$1 exited: $(tail -n 20 "$work/$1.log")"; exit 1; }
        sleep 0.2
    done
    log "$1 did not become ready at $3"
    exit 1
}

clk_tck=$(getconf CLK_TCK)
loadgen() { "$LOADGEN" "$@" --clock-ticks "$clk_tck" | tee -a "$results" | cut -c1-200 >&2; }

# --- gateway, peer and ceiling ----------------------------------------------------------
if $run_gateway; then
    read -r redis_port gw_a_port gw_b_port peer_a_port peer_b_port presence_a_port presence_b_port \
        history_a_port history_b_port < <(free_ports 9)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --protected-mode yes --maxclients 20000 > "$work/redis.log" 2>&1 &
    redis_pid=$!
    started_pids+=("$redis_pid")
    for _ in $(seq 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
    redis_url=redis://127.0.0.1:$redis_port

    # Rebalancing off: the idle row loads one replica on purpose, and Centrifugo moves nothing.
    start_gateway() { # NAME PORT -> pid in $gateway_pid
        CANVASCHAT_LISTEN=127.0.0.1:$2 CANVASCHAT_ADMIN_LISTEN=127.0.0.1:0 CANVASCHAT_REDIS_URL=$redis_url \
            CANVASCHAT_MAX_CONNECTIONS_PER_IP=20000 CANVASCHAT_REBALANCE=false \
            CANVASCHAT_RATE_LIMIT_PER_MINUTE=1000000 CANVASCHAT_MAX_CONNECTIONS=20000 \
            CANVASCHAT_SHUTDOWN_GRACE_SECONDS=10 CANVASCHAT_STATIC_DIR="$work" RUST_LOG=warn \
            "${gateway_bin:-$BIN/canvaschat-gateway}" > "$work/$1.log" 2>&1 &
        gateway_pid=$!
        started_pids+=("$gateway_pid")
        wait_http "$1" "$gateway_pid" "http://127.0.0.1:$2/ready"
    }
    # MODE: defaults (Centrifugo's own), presence (Redis presence and join/leave pushed to
    # every subscriber, like the gateway's user_joined/user_left) or history (presence plus
    # history and recovery, like the gateway's per-channel history).
    peer_config() { # MODE PORT -> config JSON
        python3 - "$1" "$2" "$redis_port" <<'EOF'
import json, sys
mode, port, redis_port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
redis = {"address": [f"redis://127.0.0.1:{redis_port}"], "prefix": "cf"}
channel = {"allow_subscribe_for_client": True, "allow_publish_for_client": True}
if mode in ("presence", "history"):
    channel.update(presence=True, join_leave=True, force_push_join_leave=True)
if mode == "history":
    # The gateway's defaults: CANVASCHAT_HISTORY_SIZE 1000, CANVASCHAT_HISTORY_SECONDS 60.
    channel.update(history_size=1000, history_ttl="60s", force_recovery=True)
print(json.dumps({
    "http_server": {"address": "127.0.0.1", "port": port},
    "log": {"level": "error"},
    "health": {"enabled": True},
    "client": {"insecure": True, "allowed_origins": ["*"]},
    "broker": {"enabled": True, "type": "redis", "redis": redis},
    "presence_manager": {"enabled": True, "type": "redis", "redis": redis},
    "channel": {"without_namespace": channel},
}))
EOF
    }
    start_peer() { # NAME PORT MODE -> pid in $peer_pid
        peer_config "$3" "$2" > "$work/$1.json"
        "$PEER" --config "$work/$1.json" > "$work/$1.log" 2>&1 &
        peer_pid=$!
        started_pids+=("$peer_pid")
        wait_http "$1" "$peer_pid" "http://127.0.0.1:$2/health"
    }
    start_gateway gateway-a "$gw_a_port"; gw_a_pid=$gateway_pid
    start_gateway gateway-b "$gw_b_port"; gw_b_pid=$gateway_pid
    start_peer centrifugo-a "$peer_a_port" defaults; peer_a_pid=$peer_pid
    start_peer centrifugo-b "$peer_b_port" defaults; peer_b_pid=$peer_pid
    start_peer centrifugo-presence-a "$presence_a_port" presence; presence_a_pid=$peer_pid
    start_peer centrifugo-presence-b "$presence_b_port" presence; presence_b_pid=$peer_pid
    start_peer centrifugo-history-a "$history_a_port" history; history_a_pid=$peer_pid
    start_peer centrifugo-history-b "$history_b_port" history; history_b_pid=$peer_pid

    gw=(--target gateway --url "ws://127.0.0.1:$gw_a_port" --url "ws://127.0.0.1:$gw_b_port"
        --watch "gateway-a=$gw_a_pid" --watch "gateway-b=$gw_b_pid" --watch "redis=$redis_pid")
    peer=(--target centrifugo --url "ws://127.0.0.1:$peer_a_port" --url "ws://127.0.0.1:$peer_b_port"
        --watch "centrifugo-a=$peer_a_pid" --watch "centrifugo-b=$peer_b_pid" --watch "redis=$redis_pid")
    peer_presence=(--target centrifugo --url "ws://127.0.0.1:$presence_a_port"
        --url "ws://127.0.0.1:$presence_b_port" --watch "centrifugo-a=$presence_a_pid"
        --watch "centrifugo-b=$presence_b_pid" --watch "redis=$redis_pid")
    # Centrifugo doing what the gateway does for every connection and message.
    peer_history=(--target centrifugo --url "ws://127.0.0.1:$history_a_port"
        --url "ws://127.0.0.1:$history_b_port" --watch "centrifugo-a=$history_a_pid"
        --watch "centrifugo-b=$history_b_pid" --watch "redis=$redis_pid")

    if want idle; then
        log "idle: $IDLE_CONNS connections on one replica"
        loadgen idle --target gateway --url "ws://127.0.0.1:$gw_a_port" --watch "gateway-a=$gw_a_pid" \
            --connections "$IDLE_CONNS" --channels 100 --hold 3
        loadgen idle --target centrifugo --url "ws://127.0.0.1:$peer_a_port" \
            --watch "centrifugo-a=$peer_a_pid" --connections "$IDLE_CONNS" --channels 100 --hold 3
        sleep 2 # let both servers finish closing the idle sockets
        # Every join is announced to the channel (up to 99 users here): Centrifugo's defaults
        # announce nothing, its presence configuration pushes join/leave as the gateway does.
        log "idle: $IDLE_CONNS connections on one replica, against the peer with presence"
        loadgen idle --target gateway --url "ws://127.0.0.1:$gw_a_port" --watch "gateway-a=$gw_a_pid" \
            --connections "$IDLE_CONNS" --channels 100 --hold 3 --scenario "idle connections vs peer with presence"
        loadgen idle --target centrifugo --url "ws://127.0.0.1:$presence_a_port" \
            --watch "centrifugo-a=$presence_a_pid" --connections "$IDLE_CONNS" --channels 100 --hold 3 \
            --scenario "idle connections vs peer with presence"
        sleep 2
    fi
    if want fanout; then
        log "fan-out 1 -> 100 in one channel, $FANOUT_RATE msg/s, two replicas"
        fanout=(--scenario "fan-out 1->100" --clients 101 --channels 1 --senders 1
            --rate "$FANOUT_RATE" --duration "$SECONDS_PER_LOAD" --size "$PAYLOAD")
        loadgen load "${gw[@]}" "${fanout[@]}"
        loadgen load "${peer[@]}" "${fanout[@]}"
        loadgen redis --scenario "fan-out 1->100" --redis-url "$redis_url" --channels 1 \
            --subscribers-per-channel 100 --rate "$FANOUT_RATE" --duration "$SECONDS_PER_LOAD" \
            --size "$PAYLOAD" --watch "redis=$redis_pid"
    fi
    if want 30k; then
        log "fan-out 1 -> 100 offered $SATURATION_RATE msg/s: who keeps up"
        saturation=(--scenario "fan-out 1->100 at $((SATURATION_RATE * 100))/s offered" --clients 101
            --channels 1 --senders 1 --rate "$SATURATION_RATE" --duration "$SATURATION_SECONDS" --size "$PAYLOAD")
        loadgen load "${gw[@]}" "${saturation[@]}"
        loadgen load "${peer[@]}" "${saturation[@]}"
        loadgen redis --scenario "fan-out 1->100 at $((SATURATION_RATE * 100))/s offered" \
            --redis-url "$redis_url" --channels 1 --subscribers-per-channel 100 --rate "$SATURATION_RATE" \
            --duration "$SATURATION_SECONDS" --size "$PAYLOAD" --watch "redis=$redis_pid"
    fi
    if want history; then
        log "fan-out 1 -> 100 offered $SATURATION_RATE msg/s against the peer with presence and history"
        saturation[1]="fan-out 1->100 at $((SATURATION_RATE * 100))/s, peer with presence+history"
        loadgen load "${gw[@]}" "${saturation[@]}"
        loadgen load "${peer_history[@]}" "${saturation[@]}"
    fi
    if want ramp; then
        log "saturation: fan-out 1 -> 100 at rising rates until p99 > 50 ms or delivery < 99 %"
        ramp=(--scenario "saturation: fan-out 1->100, peer with presence+history" --clients 101
            --channels 1 --senders 1 --rate "$RAMP_START_RATE" --factor 1.5 --steps "$RAMP_STEPS"
            --duration "$SATURATION_SECONDS" --size "$PAYLOAD")
        loadgen saturate-load "${gw[@]}" "${ramp[@]}"
        loadgen saturate-load "${peer_history[@]}" "${ramp[@]}"
    fi
    if want channels; then
        log "many small channels: $CHANNEL_CLIENTS clients in $CHANNELS channels, $CHANNEL_RATE msg/s"
        members=$((CHANNEL_CLIENTS / CHANNELS))
        many=(--scenario "$CHANNELS channels x $members" --clients "$CHANNEL_CLIENTS" --channels "$CHANNELS"
            --rate "$CHANNEL_RATE" --duration "$SECONDS_PER_LOAD" --size "$PAYLOAD")
        loadgen load "${gw[@]}" "${many[@]}"
        loadgen load "${peer[@]}" "${many[@]}"
        loadgen redis --scenario "$CHANNELS channels x $members" --redis-url "$redis_url" \
            --channels "$CHANNELS" --subscribers-per-channel $((members - 1)) --rate "$CHANNEL_RATE" \
            --duration "$SECONDS_PER_LOAD" --size "$PAYLOAD" --watch "redis=$redis_pid"
    fi
    if want storm; then
        log "connect/disconnect storm"
        storm=(--workers 32 --channels 10 --max-joins 50000 --duration "$STORM_SECONDS")
        loadgen storm "${gw[@]}" "${storm[@]}"
        loadgen storm "${peer[@]}" "${storm[@]}"
        log "connect/disconnect storm against the peer with presence on"
        loadgen storm "${gw[@]}" "${storm[@]}" --scenario "storm vs peer with presence"
        loadgen storm "${peer_presence[@]}" "${storm[@]}" --scenario "storm vs peer with presence"
    fi
    if want connect-ramp; then
        log "saturation: connects with rising concurrency until join p99 > 50 ms or joins fail"
        connect_ramp=(--scenario "saturation: connects, peer with presence+history" --workers 4
            --factor 2 --steps "$RAMP_STEPS" --channels 10 --max-joins 50000 --duration "$STORM_SECONDS")
        loadgen saturate-storm "${gw[@]}" "${connect_ramp[@]}"
        loadgen saturate-storm "${peer_history[@]}" "${connect_ramp[@]}"
    fi
    if want drain; then
        log "SIGTERM drain under load (replica b of each)"
        drain=(--scenario "SIGTERM drain" --clients 200 --channels 10 --rate 400
            --duration "$DRAIN_SECONDS" --size "$PAYLOAD" --replica 1 --after 3)
        loadgen drain "${gw[@]}" "${drain[@]}" --pid "$gw_b_pid"
        loadgen drain "${peer[@]}" "${drain[@]}" --pid "$peer_b_pid"
    fi
fi

# --- operator ---------------------------------------------------------------------------
if $run_operator; then
    log "operator: starting a private local control plane"
    # up.sh stops what it started itself when it fails (keeping its logs); stop it here only
    # once it is up.
    cp_env=$(CANVASCHAT_CP_DIR=$work/controlplane "$ROOT/tests/controlplane/up.sh") ||
        { log "operator: the control plane did not start; its logs are in $work/controlplane/logs"; exit 1; }
    controlplane_dir=$work/controlplane
    eval "$(tail -n 1 <<< "$cp_env")"
    OPERATOR=$BIN/canvaschat-operator
    "$OPERATOR" crd | kubectl apply -f - > /dev/null
    "$ROOT/tests/controlplane/wait-established.sh" canvaschats.canvaschat.io > /dev/null
    # A free port can be taken by someone else before the operator binds it: retry on a new one.
    for attempt in 1 2 3; do
        read -r op_port < <(free_ports 1)
        RUST_LOG=warn "$OPERATOR" run --leader-election=false --metrics-addr "127.0.0.1:$op_port" \
            --resync-seconds "$RESYNC" > "$work/operator.log" 2>&1 &
        op_pid=$!
        started_pids+=("$op_pid")
        sleep 1
        kill -0 "$op_pid" 2> /dev/null && break
        grep -q 'Address already in use' "$work/operator.log" && [ $attempt -lt 3 ] ||
            { log "operator exited: $(tail -n 5 "$work/operator.log")"; exit 1; }
    done
    wait_http operator "$op_pid" "http://127.0.0.1:$op_port/readyz"

    # What a CanvasChat with the defaults yields, as the operator itself renders it offline.
    printf 'apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata:\n  name: x\n  namespace: x\nspec: {}\n' |
        "$OPERATOR" render -f - > "$work/rendered.yaml"
    per_chat=$(grep -c '^kind:' "$work/rendered.yaml")
    child_kinds=$(awk '/^kind:/ { print tolower($2) }' "$work/rendered.yaml" | sort -u | paste -sd, -)
    # Convergence with a watch, as tests/e2e/test_convergence.py measures it (same code): one
    # chat created -> Ready, then $OPERATOR_MANY created at once -> all applied, all Ready.
    log "operator: 1 CanvasChat, then $OPERATOR_MANY at once (tests/e2e/convergence.py)"
    kubectl create namespace bench-convergence > /dev/null
    python3 "$ROOT/tests/e2e/convergence.py" --namespace bench-convergence --chats "$OPERATOR_MANY" \
        > "$work/convergence.json" || { log "operator: the convergence measurement failed"; exit 1; }

    # Idle resync: let the first reconciles settle, then watch one resync period (plus margin)
    # with nothing changed by anyone: count the operator's server-side-apply requests (only it
    # uses SSA here) and the objects whose operator-owned fields changed.
    apply_requests() {
        kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ && /verb="APPLY"/ { n += $NF } END { print n + 0 }'
    }
    reconciles() {
        curl -fs "http://127.0.0.1:$op_port/metrics" | awk '/^canvaschat_operator_reconciliations_total/ { print $NF }'
    }
    operator_stamps() { # each object the operator manages -> the time of its last operator write
        kubectl get "$child_kinds" -A -l app.kubernetes.io/managed-by=canvaschat-operator \
            -o json > "$work/objects.json"
        kubectl get canvaschats -A -o json > "$work/chats.json"
        python3 - "$work/objects.json" "$work/chats.json" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    for item in json.load(open(path))["items"]:
        meta = item["metadata"]
        times = sorted(f.get("time", "") for f in meta.get("managedFields", []) if f.get("manager") == "canvaschat-operator")
        print(item["kind"], meta.get("namespace", ""), meta["name"], times[-1] if times else "-")
EOF
    }
    sleep "$RESYNC"
    operator_stamps | sort -u > "$work/stamps-before"
    applies_before=$(apply_requests) reconciles_before=$(reconciles)
    sleep $((RESYNC + 5))
    operator_stamps | sort -u > "$work/stamps-after"
    applies_after=$(apply_requests) reconciles_after=$(reconciles)
    changed=$(comm -13 "$work/stamps-before" "$work/stamps-after" | wc -l)
    rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$op_pid/status")
    total_chats=$((2 + OPERATOR_MANY)) # and the paused marker chat
    python3 - "$results" "$work/convergence.json" <<EOF
import json, sys
convergence = json.load(open(sys.argv[2]))
reconciles = $reconciles_after - $reconciles_before
applies = $applies_after - $applies_before
line = {
    "scenario": "operator", "system": "operator",
    "metrics": [
        {"name": "create -> Ready, 1 CanvasChat (s)", "value": convergence["one_chat_ready_seconds"], "better": "lower"},
        {"name": "create -> all applied, $OPERATOR_MANY CanvasChats (s)", "value": convergence["all_applied_seconds"], "better": "lower"},
        {"name": "create -> all Ready, $OPERATOR_MANY CanvasChats (s)", "value": convergence["all_ready_seconds"], "better": "lower"},
        {"name": "objects changed in an idle resync", "value": $changed, "better": "lower"},
        {"name": "SSA requests per CanvasChat per idle resync", "value": applies / max(reconciles, 1), "better": "lower"},
        {"name": "operator RSS MiB with $total_chats CanvasChats", "value": $rss_kib / 1024, "better": "lower"},
    ],
    "details": {"resync_seconds": $RESYNC, "reconciles_in_window": reconciles, "apply_requests_in_window": applies,
                "objects_watched": sum(1 for _ in open("$work/stamps-after")), "children_per_chat": $per_chat,
                "convergence": convergence},
}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(line) + "\n")
print(json.dumps(line)[:200], file=sys.stderr)
EOF
fi

# --- table ------------------------------------------------------------------------------
{
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
        "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM," \
        "load average before the run $load_before; $(date -u '+%Y-%m-%d %H:%M UTC')$($quick && echo ', --quick')"
    echo
    "$LOADGEN" table "$results"
} | tee "$out/table.md"
