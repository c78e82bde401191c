#!/usr/bin/env bash
# The ticklane demo: the whole appliance on two network namespaces made for
# it (198.18.0.0/15 hosts, 239.0.0.0/8 groups). Everything it starts (the
# namespaces, its processes by PID, its temporary directory) is removed
# again at the end, on failure and on Ctrl-C too. Needs root (XDP, AF_XDP,
# namespaces).
#
#   exchange side (ns tldemo-x)               appliance side (ns tldemo-a)
#   ticklane send  line A (lossy) ──┐
#   ticklane send  line B (lossy) ──┴─veth─►  XDP → AF_XDP → ticklane run ─► books, VWAP, tape
#   ticklane retrans-server  ◄──────────────  gap re-requests (MoldUDP64)      │  journal ─► ClickHouse
#                                             ticklane ctl / top (gRPC), /metrics, line control
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "the demo builds network namespaces and attaches XDP: run it as root" >&2
  exit 1
fi
command -v cargo >/dev/null || { echo "missing cargo (Rust)" >&2; exit 1; }
bash scripts/deps.sh

X=tldemo-x; A=tldemo-a; VX=vtldemox; VA=vtldemoa
LINE_A=239.18.1.1:26477; LINE_B=239.18.1.2:26477
GRPC=127.0.0.1:50051; CONTROL=127.0.0.1:50052; METRICS=127.0.0.1:9108
CH_HTTP=18123; CH_TCP=19000
TMUX_SOCKET=tldemo-$$
started=$SECONDS
work=$(mktemp -d)
pids=()
cleanup() {
  trap - EXIT INT TERM
  tmux -L "$TMUX_SOCKET" kill-server 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$X" 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM
step() { printf '\n\033[1m==> [%3d s] %s\033[0m\n' "$((SECONDS - started))" "$*"; }

step "building ticklane (release)"
cargo build --release --locked -p ticklane
bin=$PWD/target/release/ticklane
# ticklane in the appliance's namespace, in the foreground (what runs in the background is
# started with `ip netns exec` itself, so that $! is its PID).
ina() { ip netns exec "$A" "$bin" "$@"; }

step "building the lab: namespaces $X and $A, veth $VX <-> $VA"
ip netns add "$X"; ip netns add "$A"
ip link add "$VX" netns "$X" type veth peer name "$VA" netns "$A"
ip -n "$X" addr add 198.18.50.1/24 dev "$VX"; ip -n "$A" addr add 198.18.50.2/24 dev "$VA"
ip -n "$X" link set "$VX" mtu 1500 up; ip -n "$A" link set "$VA" mtu 1500 up
ip -n "$X" link set lo up; ip -n "$A" link set lo up

clickhouse=()
if [ -x /usr/sbin/clickhouse-server ]; then
  step "appliance side: the real ClickHouse server (its own config and data in a temporary directory)"
  ch=$work/clickhouse
  mkdir -p "$ch"/{log,data,tmp,user_files,format_schemas}
  cat > "$ch/config.xml" <<EOF
<yandex>
<logger><level>warning</level><log>$ch/log/server.log</log><errorlog>$ch/log/error.log</errorlog><console>0</console></logger>
<listen_host>127.0.0.1</listen_host><http_port>$CH_HTTP</http_port><tcp_port>$CH_TCP</tcp_port>
<path>$ch/data/</path><tmp_path>$ch/tmp/</tmp_path><user_files_path>$ch/user_files/</user_files_path>
<format_schema_path>$ch/format_schemas/</format_schema_path><users_config>$ch/users.xml</users_config>
<default_profile>default</default_profile><default_database>default</default_database>
<mark_cache_size>5368709</mark_cache_size>
</yandex>
EOF
  cat > "$ch/users.xml" <<'EOF'
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
EOF
  # Started now, ready by the time the feed is generated.
  (cd "$ch" && exec ip netns exec "$A" /usr/sbin/clickhouse-server --config-file="$ch/config.xml" >/dev/null 2>&1) &
  pids+=($!)
  clickhouse=(--clickhouse "http://127.0.0.1:$CH_HTTP")
else
  step "no clickhouse-server here: the audit journal alone is the audit store"
fi

step "generating a synthetic NASDAQ day (1,000,000 messages, 200 stocks) on two lines, A and B, each losing 2% of its packets (its own 2%), with duplicates and reordering"
"$bin" gen --messages 1000000 --stocks 200 --seed 7 --group "$LINE_A" -o "$work/day-a.pcap" \
  --expect-book "$work/expected.book" --damaged "$work/lossy-a.pcap" --drop 0.02 --dup 0.01 --reorder 0.01 --damage-seed 1
"$bin" gen --messages 1000000 --stocks 200 --seed 7 --group "$LINE_B" -o "$work/day-b.pcap" \
  --damaged "$work/lossy-b.pcap" --drop 0.02 --dup 0.01 --reorder 0.01 --damage-seed 2

step "the first messages, canonical JSON Lines (ticklane decode)"
"$bin" decode "$work/day-a.pcap" | head -n 3

step "exchange side: a MoldUDP64 re-request server answering from the clean feed"
# Only the appliance's address is answered, with a bucket sized for this lab.
ip netns exec "$X" "$bin" retrans-server "$work/day-a.pcap" --listen 198.18.50.1:9000 --allow 198.18.50.2/32 \
  --client-burst 1048576 --client-rate 16000000 --duration 300 2> "$work/retrans.log" &
pids+=($!)
# The server loads the capture before it listens: a request sent before
# that is lost, and the appliance's first retry only comes 50 ms later.
for _ in $(seq 1 200); do grep -q "listening on" "$work/retrans.log" 2>/dev/null && break; sleep 0.05; done

if [ ${#clickhouse[@]} -gt 0 ]; then
  for _ in $(seq 1 400); do
    ip netns exec "$A" clickhouse-client --port "$CH_TCP" --query "SELECT 1" >/dev/null 2>&1 && break; sleep 0.05
  done
  ina audit init "${clickhouse[@]}"
fi

step "appliance side: ticklane run (XDP steering, AF_XDP, A/B arbitration, gap recovery, books, audit journal, control plane)"
# The default rings (16k rx, 32k fill) ride out the stalls of a 2-core
# machine where the senders, the re-request server and the poller share the
# cores (socket.rx_ring_full in the summary counts overflows).
ip netns exec "$A" "$bin" run --iface "$VA" --feed "$LINE_A" --feed "$LINE_B" --retrans 198.18.50.1:9000 \
  --grpc "$GRPC" --control "$CONTROL" --metrics "$METRICS" \
  --audit-dir "$work/journal" "${clickhouse[@]}" \
  --duration 120 --summary-json "$work/run.json" --book-out "$work/run.book" \
  > "$work/run.out" 2> "$work/run.err" &
run_pid=$!
pids+=("$run_pid")
for _ in $(seq 1 200); do grep -q "ready on" "$work/run.err" 2>/dev/null && break; sleep 0.05; done
grep -E "ready on|gRPC on|line control on|metrics on" "$work/run.err" || { cat "$work/run.err"; exit 1; }

step "ticklane ctl status (gRPC)"
ina ctl --grpc "$GRPC" status

# ticklane top in a detached 80x24 terminal (tmux), captured below.
tmux -L "$TMUX_SOCKET" new-session -d -s top -x 80 -y 24 \
  "ip netns exec $A $bin top --grpc $GRPC --interval 0.5"

step "sending lines A and B at 4,000 packets/s each (about 6 s): A through AF_XDP, B through AF_PACKET"
# (The veth has one queue: one AF_XDP socket may send on it.)
ip netns exec "$X" "$bin" send "$work/lossy-a.pcap" --iface "$VX" --pps 4000 > "$work/send-a.out" 2>&1 &
send_a=$!; pids+=("$send_a")
ip netns exec "$X" "$bin" send "$work/lossy-b.pcap" --iface "$VX" --pps 4000 --via packet > "$work/send-b.out" 2>&1 &
send_b=$!; pids+=("$send_b")
sleep 2.5
stock=$(head -n 1 "$work/expected.book" | sed 's/^{"stock":"\([^"]*\)".*/\1/')
step "ticklane ctl book $stock --depth 5, during the feed"
ina ctl --grpc "$GRPC" book "$stock" --depth 5
sleep 1
step "ticklane top, 80x24, during the feed (a few seconds of it)"
tmux -L "$TMUX_SOCKET" capture-pane -p -t top
sleep 1.5
echo "--- 1.5 s later:"
tmux -L "$TMUX_SOCKET" capture-pane -p -t top
step "a few lines of /metrics (Prometheus, HTTP)"
ip netns exec "$A" curl -s "http://$METRICS/metrics" \
  | grep -E '^ticklane_(packets_total|delivered_messages_total|lost_messages_total|session_gaps_filled_total|line_duplicates_total|xsk_rx_ring_full_total)' | head -n 8
wait "$send_a"; wait "$send_b"
cat "$work/send-a.out" "$work/send-b.out"
sleep 3
step "ticklane top after the feed"
tmux -L "$TMUX_SOCKET" capture-pane -p -t top
tmux -L "$TMUX_SOCKET" send-keys -t top q
step "the line protocol (nc-style), STATUS"
ip netns exec "$A" bash -c "exec 3<>/dev/tcp/${CONTROL%:*}/${CONTROL#*:}; printf 'STATUS\n' >&3; head -n 1 <&3"

step "stopping the appliance (SIGINT): its summary"
kill -INT "$run_pid"; wait "$run_pid" || true
cat "$work/run.out"
grep -E "audit:" "$work/run.err" || true
python3 - "$work/run.json" <<'PY' 2>/dev/null || cat "$work/run.json"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  path: {d['mode']} ({d['xdp_mode']} XDP, {d['bind']} bind); {d['packets']} frames, {d['messages']} messages")
s = d['session']
print(f"  gaps: {s['gaps']} detected, {s['gaps_filled']} filled ({s['requests']} requests for {s['requested_messages']} messages, {s['window_overflow']} packets past a full reorder window); lost: {s['lost_messages']}")
r = s['recovery_us']
print(f"  gap recovery time: p50 <= {r['p50_at_most']} us, p99 <= {r['p99_at_most']} us over {r['gaps']} gaps")
print(f"  XDP program counters: {d['xdp_counters']}")
PY

step "checks"
fail=0
if cmp -s "$work/run.book" "$work/expected.book"; then
  echo "  books: yes, the $(wc -l < "$work/run.book") books after the two lossy lines equal the clean feed's (ticklane book)"
else
  echo "  books: NO, they differ from the clean feed's"; fail=1
fi
lost=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["session"]["lost_messages"])' "$work/run.json")
if [ "$lost" = 0 ]; then echo "  lost: nothing (0 messages)"; else echo "  lost: $lost messages"; fail=1; fi
echo "  audit journal:"
if "$bin" audit verify "$work/day-a.pcap" --feed "$LINE_A" --journal "$work/journal"; then :; else fail=1; fi
if [ ${#clickhouse[@]} -gt 0 ]; then
  echo "  audit in ClickHouse:"
  if ina audit verify "$work/day-a.pcap" --feed "$LINE_A" "${clickhouse[@]}"; then :; else fail=1; fi
fi
head -c 300 "$work/run.book"; echo " …"
echo
if [ "$fail" = 0 ]; then
  echo "==> all checks passed in $((SECONDS - started)) s; the namespaces, processes and files are removed on exit"
else
  echo "==> a check FAILED (see above)"; exit 1
fi
