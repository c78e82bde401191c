#!/usr/bin/env bash
# The ticklane demo on a fresh machine: build, generate a synthetic NASDAQ day,
# decode it, show its summary, and decode a real NASDAQ capture.
# (Later steps of the roadmap grow this into the full appliance on network
# namespaces: XDP steering, AF_XDP pollers, books, ClickHouse audit.)
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "==> building ticklane (release)"
cargo build --release --locked -p ticklane
bin=target/release/ticklane

echo "==> generating 2,000,000 messages for 500 stocks (+ a copy with 1% loss)"
"$bin" gen --messages 2000000 --stocks 500 --seed 7 -o "$work/day.pcap" \
  --damaged "$work/lossy.pcap" --drop 0.01

echo "==> the first messages, canonical JSON Lines"
"$bin" decode "$work/day.pcap" | head -n 5

echo "==> decoding the whole day"
start=$(date +%s%N)
lines=$("$bin" decode "$work/day.pcap" | wc -l)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "$lines messages decoded to JSON in ${ms} ms"

echo "==> summary of the lossy copy (gaps are exact sequence ranges)"
"$bin" decode --summary "$work/lossy.pcap" | head -n 40

real=../shared/data/itch50-captures/Nasdaq-OrderExecutedMessage.pcap
if [ -f "$real" ]; then
  echo "==> a real NASDAQ capture"
  "$bin" decode "$real"
fi
