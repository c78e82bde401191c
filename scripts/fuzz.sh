#!/usr/bin/env bash
# Runs every cargo-fuzz target of the protocol layer for N seconds (default
# 10), starting from the seed corpus in protocols/fuzz/corpus. Installs
# cargo-fuzz if needed. libFuzzer's sanitizer flags are nightly-only, so the
# stable toolchain is told to accept them with RUSTC_BOOTSTRAP=1 (the only
# toolchain these machines have is stable).
set -euo pipefail
cd "$(dirname "$0")/../protocols/fuzz"
seconds=${1:-10}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  work=$(mktemp -d)
  cp corpus/"$target"/seed-* "$work"/
  echo "fuzzing $target for ${seconds}s"
  status=0
  cargo fuzz run "$target" "$work" -- -max_total_time="$seconds" -print_final_stats=1 \
    > "$work.log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|Done|ERROR|panicked|SUMMARY' "$work.log" || tail -n 20 "$work.log"
  rm -f "$work.log"
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target found a failure (exit $status); see protocols/fuzz/artifacts/$target" >&2
    exit 1
  fi
done
