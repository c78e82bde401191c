#!/usr/bin/env bash
# The ticklane demo: the whole appliance on two network namespaces made for
# it (198.18.0.0/15 hosts, 239.0.0.0/8 groups), removed again at the end,
# also on failure. Needs root (XDP, AF_XDP, namespaces).
#
#   exchange side (ns tldemo-x)            appliance side (ns tldemo-a)
#   ticklane send  (a lossy feed)  ──veth──►  XDP → AF_XDP → ticklane run
#   ticklane retrans-server        ◄─────────  gap re-requests (MoldUDP64)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "the demo builds network namespaces and attaches XDP: run it as root" >&2
  exit 1
fi
command -v cargo >/dev/null || { echo "missing cargo (Rust)" >&2; exit 1; }
bash scripts/deps.sh

X=tldemo-x; A=tldemo-a; VX=vtldemox; VA=vtldemoa
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$X" 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building ticklane (release)"
cargo build --release --locked -p ticklane
bin=$PWD/target/release/ticklane

echo "==> generating a synthetic NASDAQ day: 1,000,000 messages, 200 stocks, and a copy with 2% loss, duplicates and reordering"
"$bin" gen --messages 1000000 --stocks 200 --seed 7 --group 239.18.1.1:26477 -o "$work/day.pcap" \
  --expect-book "$work/expected.book" --damaged "$work/lossy.pcap" --drop 0.02 --dup 0.01 --reorder 0.01

echo "==> the first messages, canonical JSON Lines (ticklane decode)"
"$bin" decode "$work/day.pcap" | head -n 3

echo "==> building the lab: namespaces $X and $A, veth $VX <-> $VA"
ip netns add "$X"; ip netns add "$A"
ip link add "$VX" netns "$X" type veth peer name "$VA" netns "$A"
ip -n "$X" addr add 198.18.50.1/24 dev "$VX"; ip -n "$A" addr add 198.18.50.2/24 dev "$VA"
ip -n "$X" link set "$VX" mtu 1500 up; ip -n "$A" link set "$VA" mtu 1500 up
ip -n "$X" link set lo up; ip -n "$A" link set lo up

echo "==> exchange side: a MoldUDP64 re-request server answering from the clean feed"
# Only the appliance's address is answered, with a bucket sized for this
# lab (2% loss of a 1.1 Gbit/s feed).
ip netns exec "$X" "$bin" retrans-server "$work/day.pcap" --listen 198.18.50.1:9000 --allow 198.18.50.2/32 \
  --client-burst 1048576 --client-rate 16000000 --duration 300 2> "$work/retrans.log" &
pids+=($!)
# The server loads the capture before it listens: a request sent before
# that is lost, and the appliance's first retry only comes 50 ms later,
# doubling (it has no round trip measured yet).
for _ in $(seq 1 200); do grep -q "listening on" "$work/retrans.log" 2>/dev/null && break; sleep 0.05; done

echo "==> appliance side: ticklane run (XDP steering, AF_XDP, books, VWAP, gap recovery)"
# The default rings (16k rx, 32k fill) ride out the stalls of a 2-core
# machine where the sender, the re-request server and the poller share the
# cores (socket.rx_ring_full in the summary counts overflows).
ip netns exec "$A" "$bin" run --iface "$VA" --feed 239.18.1.1:26477 --retrans 198.18.50.1:9000 \
  --duration 120 --summary-json "$work/run.json" --book-out "$work/run.book" \
  > "$work/run.out" 2> "$work/run.err" &
run_pid=$!
pids+=("$run_pid")
for _ in $(seq 1 200); do grep -q "ready on" "$work/run.err" 2>/dev/null && break; sleep 0.05; done
grep "ready on" "$work/run.err" || { cat "$work/run.err"; exit 1; }

echo "==> sending the lossy feed at 100,000 packets/s"
ip netns exec "$X" "$bin" send "$work/lossy.pcap" --iface "$VX" --pps 100000
sleep 4
kill -INT "$run_pid"; wait "$run_pid" || true
cat "$work/run.out"
python3 - "$work/run.json" <<'PY' 2>/dev/null || cat "$work/run.json"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  path: {d['mode']} ({d['xdp_mode']} XDP, {d['bind']} bind); {d['packets']} frames, {d['messages']} messages")
s = d['session']
print(f"  gaps: {s['gaps']} detected, {s['gaps_filled']} filled from the server ({s['requests']} requests for {s['requested_messages']} messages, {s['window_overflow']} packets past a full reorder window); lost: {s['lost_messages']}")
r = s['recovery_us']
print(f"  gap recovery time: p50 <= {r['p50_at_most']} us, p99 <= {r['p99_at_most']} us over {r['gaps']} gaps")
print(f"  XDP program counters: {d['xdp_counters']}")
PY

echo "==> the books after the repaired feed equal the clean feed's:"
if cmp -s "$work/run.book" "$work/expected.book"; then
  echo "  yes: $(wc -l < "$work/run.book") books, identical"
else
  echo "  NO: the books differ"; exit 1
fi
head -c 300 "$work/run.book"; echo " …"
echo "==> done; the namespaces are removed on exit"
