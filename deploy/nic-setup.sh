#!/usr/bin/env bash
# Prepares a NIC queue for ticklane on a production host (never used by the
# tests, which build their own veth pairs):
#   nic-setup.sh IFACE QUEUE CORE [GROUP:PORT[@SOURCE] ...]
# - flow steering: each feed's multicast traffic to QUEUE (ethtool ntuple),
#   from its source only when the feed names one;
# - VLAN stripping off, so that XDP sees the tags ticklane checks (--vlan);
# - the queue's interrupt pinned to CORE's sibling, away from the poller;
# - busy-poll and NAPI defer settings; huge pages for the UMEM.
# Each step that the driver does not support is reported and skipped.
set -uo pipefail
iface=${1:?usage: nic-setup.sh IFACE QUEUE CORE [GROUP:PORT[@SOURCE] ...]}
queue=${2:?queue}
core=${3:?core}
shift 3

step() { printf 'nic-setup: %s\n' "$*"; }

# Feeds to steer: arguments, or the --feed values of TICKLANE_FEEDS.
feeds=("$@")
if [ ${#feeds[@]} -eq 0 ] && [ -n "${TICKLANE_FEEDS:-}" ]; then
  read -r -a words <<<"$TICKLANE_FEEDS"
  for ((i = 0; i < ${#words[@]}; i++)); do
    [ "${words[i]}" = --feed ] && feeds+=("${words[i+1]}")
  done
fi

step "enabling ntuple filters on $iface"
ethtool -K "$iface" ntuple on || step "ntuple not supported: steer with RSS instead"
for f in "${feeds[@]}"; do
  src=()
  case $f in *@*) src=(src-ip "${f#*@}"); f=${f%@*} ;; esac
  group=${f%:*}; port=${f##*:}
  step "steering $group:$port${src[1]:+ from ${src[1]}} to queue $queue"
  ethtool -N "$iface" flow-type udp4 "${src[@]}" dst-ip "$group" dst-port "$port" action "$queue" \
    || step "could not add a rule for $f"
done

# With VLAN stripping on, the NIC takes the tags off before XDP runs, and
# ticklane could not tell a feed's VLAN from another (--vlan).
step "VLAN stripping off on $iface"
ethtool -K "$iface" rxvlan off || step "could not turn VLAN stripping off: frames reach XDP without their tags"

irq=$(awk -v q="$iface.*[-_]$queue\$" '$0 ~ q {sub(":", "", $1); print $1}' /proc/interrupts | head -n 1)
if [ -n "$irq" ]; then
  sibling=$(( core ^ 1 ))
  step "IRQ $irq of queue $queue to CPU $sibling (the poller keeps CPU $core)"
  echo "$sibling" > "/proc/irq/$irq/smp_affinity_list" || step "could not set the IRQ affinity"
else
  step "no IRQ found for queue $queue of $iface: leaving affinities alone"
fi

step "preferred busy polling: NAPI defer and GRO flush timeout"
echo 2 > "/sys/class/net/$iface/napi_defer_hard_irqs" || true
echo 200000 > "/sys/class/net/$iface/gro_flush_timeout" || true

pages=${TICKLANE_HUGEPAGES:-64}
current=$(cat /proc/sys/vm/nr_hugepages)
if [ "$current" -lt "$pages" ]; then
  step "reserving $pages huge pages for the UMEM (was $current)"
  echo "$pages" > /proc/sys/vm/nr_hugepages || step "could not reserve huge pages: the UMEM uses normal pages"
fi
exit 0
