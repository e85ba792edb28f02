#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 60) from seed corpora made of real packets,
# and prints executions, coverage and crashes per target. Crashes land in
# proto/fuzz/artifacts/TARGET/; each one found must become a regression test.
#   SECS=60 bash proto/fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-60}
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz
corpus=fuzz/corpus
cargo run -q -p sshvpn-proto --example fuzz_seeds -- "$corpus"
# cargo-fuzz passes -Z sanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null 2>&1 || cargo fuzz build -O
for target in $(cargo fuzz list); do
  log=$(mktemp)
  if cargo fuzz run -O "$target" "$corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=1024 >"$log" 2>&1; then status=ok; else status=CRASH; fi
  runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  printf '%-18s %-6s runs %-10s coverage %s\n' "$target" "$status" "${runs:-?}" "${cov:-?}"
  [ "$status" = ok ] || tail -30 "$log"
  rm -f "$log"
done
