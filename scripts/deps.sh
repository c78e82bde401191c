#!/usr/bin/env bash
# Installs the system packages ticklane builds and tests with, when missing
# (Debian; run as root): clang and libbpf headers build the XDP program, m4
# and libelf build xsk-rs's vendored libxdp, iproute2 makes the test
# namespaces, a C toolchain builds -sys crates and cargo-fuzz's libFuzzer.
# tmux runs the terminal tests, python3 with venv the foreign gRPC client test.
# The audit tests start Debian's ClickHouse server (18.16) themselves (it is
# not started as a service here).
set -euo pipefail
need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v m4 >/dev/null 2>&1 || need+=(m4)
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
[ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# The demo fetches /metrics with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
# Wireshark's dissectors read the captures gen writes (tests/wireshark.rs);
# ethtool is what deploy/nic-setup.sh drives.
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The send bench's baseline (tcpreplay --topspeed on the same veth).
command -v tcpreplay >/dev/null 2>&1 || need+=(tcpreplay)
# The control plane's foreign-client test: Python grpcio in a virtualenv
# (pip installs grpcio and grpcio-tools from PyPI into target/).
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (apt-get install them as root)" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark's package asks whether non-root users may capture: no question.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
