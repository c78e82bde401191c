#!/usr/bin/env bash
# Prepares one NIC queue for ticklane on a production host:
#   nic-setup.sh [--dry-run] [--threaded-napi] IFACE QUEUE CORE [GROUP:PORT[@SOURCE] ...]
# - flow steering: each feed's multicast traffic to QUEUE (ethtool ntuple
#   rules), from its source only when the feed names one (feeds: the
#   arguments, else the --feed values of $TICKLANE_FEEDS);
# - VLAN stripping off, so that XDP sees the tags ticklane checks (--vlan);
# - the queue's interrupt pinned to CORE's sibling, away from the poller;
# - preferred busy polling: NAPI hard-IRQ deferral and GRO flush timeout
#   (ticklane run --busy-poll then polls the queue from the poller);
# - with --threaded-napi, the queue's NAPI work in a kernel thread instead
#   (for drivers or hosts where busy polling is not wanted);
# - huge pages for the UMEM ($TICKLANE_HUGEPAGES, default 64).
# --dry-run prints every command it would run and changes nothing. Steps
# the driver or the host does not support are reported ("not applied") and
# the rest goes on; exit 1 only when the interface or queue does not exist,
# 2 on bad arguments. Needs root (systemd runs it as ExecStartPre=+).
set -uo pipefail
usage() {
  echo "usage: nic-setup.sh [--dry-run] [--threaded-napi] IFACE QUEUE CORE [GROUP:PORT[@SOURCE] ...]" >&2
  exit 2
}
dry=0
threaded=0
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1; shift ;;
    --threaded-napi) threaded=1; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "nic-setup: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage
iface=$1 queue=$2 core=$3
shift 3
number() { [[ $2 =~ ^[0-9]+$ ]] || { echo "nic-setup: $1 '$2' is not a number" >&2; exit 2; }; }
number QUEUE "$queue"
number CORE "$core"
net=/sys/class/net/$iface
if [ ! -d "$net" ]; then
  echo "nic-setup: no interface $iface here (\`ip link\` lists them)" >&2
  exit 1
fi
queues=$(find "$net/queues" -maxdepth 1 -name 'rx-*' 2>/dev/null | wc -l)
if [ "$queue" -ge "$queues" ]; then
  echo "nic-setup: $iface has $queues receive queues (0..$((queues - 1))): there is no queue $queue (\`ethtool -L $iface combined N\` makes more)" >&2
  exit 1
fi
driver=$(basename "$(readlink "$net/device/driver" 2>/dev/null || true)")
[ -n "$driver" ] || driver=$(ethtool -i "$iface" 2>/dev/null | awk '/^driver:/ {print $2}')
printf 'nic-setup: %s (driver %s), queue %d of %d, poller on CPU %d%s\n' \
  "$iface" "${driver:-unknown}" "$queue" "$queues" "$core" "$([ $dry = 1 ] && echo ': dry run, nothing is changed')"

applied=0
missed=0
# run WHAT CMD...: prints the plan in a dry run, else runs it and says how it went.
run() {
  local what=$1
  shift
  if [ $dry = 1 ]; then
    printf 'nic-setup: plan: %s: %s\n' "$what" "$*"
    return 0
  fi
  local err
  if err=$("$@" 2>&1); then
    printf 'nic-setup: done: %s\n' "$what"
    applied=$((applied + 1))
  else
    printf 'nic-setup: not applied: %s: %s\n' "$what" "$(printf '%s' "$err" | head -n 1)"
    missed=$((missed + 1))
    return 1
  fi
}
# put WHAT VALUE FILE: writes VALUE into a sysfs or procfs FILE.
put() {
  local what=$1 value=$2 file=$3
  if [ $dry = 1 ]; then
    printf 'nic-setup: plan: %s: echo %s > %s\n' "$what" "$value" "$file"
    return 0
  fi
  run "$what" sh -c 'echo "$1" > "$2"' put "$value" "$file"
}
# skip WHAT WHY: a step that does not apply here.
skip() {
  printf 'nic-setup: not applicable: %s: %s\n' "$1" "$2"
  missed=$((missed + 1))
}

# Feeds to steer: arguments, or the --feed values of TICKLANE_FEEDS.
feeds=("$@")
if [ ${#feeds[@]} -eq 0 ] && [ -n "${TICKLANE_FEEDS:-}" ]; then
  read -r -a words <<<"$TICKLANE_FEEDS"
  for ((i = 0; i < ${#words[@]} - 1; i++)); do
    [ "${words[i]}" = --feed ] && feeds+=("${words[i + 1]}")
  done
fi

if run "ntuple filters on" ethtool -K "$iface" ntuple on; then
  for f in "${feeds[@]}"; do
    src=()
    case $f in *@*) src=(src-ip "${f#*@}"); f=${f%@*} ;; esac
    group=${f%:*} port=${f##*:}
    run "steer $group:$port${src[1]:+ from ${src[1]}} to queue $queue" \
      ethtool -N "$iface" flow-type udp4 "${src[@]}" dst-ip "$group" dst-port "$port" action "$queue"
  done
  [ ${#feeds[@]} -gt 0 ] || skip "flow steering" "no feeds given (arguments or TICKLANE_FEEDS)"
else
  skip "flow steering" "without ntuple filters, steer the feeds with RSS (ethtool -X) or use one queue"
fi

# With VLAN stripping on, the NIC takes the tags off before XDP runs, and
# ticklane could not tell a feed's VLAN from another (--vlan).
run "VLAN stripping off" ethtool -K "$iface" rxvlan off

irq=$(awk -v q="$iface.*[-_]$queue\$" '$0 ~ q {sub(":", "", $1); print $1}' /proc/interrupts | head -n 1)
if [ -n "$irq" ]; then
  put "IRQ $irq of queue $queue to CPU $((core ^ 1)) (the poller keeps CPU $core)" \
    "$((core ^ 1))" "/proc/irq/$irq/smp_affinity_list"
else
  skip "IRQ affinity" "$iface has no interrupt for queue $queue in /proc/interrupts (a virtual device, or named otherwise)"
fi

put "busy poll: defer hard IRQs twice" 2 "$net/napi_defer_hard_irqs"
put "busy poll: GRO flush timeout 200 us" 200000 "$net/gro_flush_timeout"
if [ $threaded = 1 ]; then
  put "threaded NAPI" 1 "$net/threaded"
fi

pages=${TICKLANE_HUGEPAGES:-64}
number TICKLANE_HUGEPAGES "$pages"
current=$(cat /proc/sys/vm/nr_hugepages)
if [ "$current" -lt "$pages" ]; then
  put "reserve $pages huge pages for the UMEM (now $current)" "$pages" /proc/sys/vm/nr_hugepages
else
  printf 'nic-setup: %s: %s huge pages reserved already (%s wanted)\n' "$([ $dry = 1 ] && echo plan || echo done)" "$current" "$pages"
fi

if [ $dry = 1 ]; then
  echo "nic-setup: dry run: nothing changed"
else
  echo "nic-setup: $applied steps applied, $missed not applied or not applicable (see above)"
fi
exit 0
