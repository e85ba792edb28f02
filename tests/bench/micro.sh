#!/usr/bin/env bash
# Micro-benchmarks (criterion): seal/open per cipher against the raw crates on the same buffer
# sizes, and one key exchange per method. Prints a table of medians and the framing ratio.
#     bash tests/bench/micro.sh
# Run it alone: two cores, one benchmark at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}

cargo bench -p sshvpn-proto --bench seal_open --bench kex -- --noplot >/dev/null

# Median in nanoseconds from criterion's estimates.json for one benchmark id.
median_ns() {
  local f="$target/criterion/$1/new/estimates.json"
  [ -f "$f" ] || { echo "missing $f: did the benchmark run?" >&2; exit 1; }
  grep -o '"median":{[^}]*}[^}]*}' "$f" | grep -o '"point_estimate":[0-9.e+-]*' | cut -d: -f2
}

echo "| operation | cipher | bytes | sshvpn | raw crate | sshvpn / raw time |"
echo "| --- | --- | --- | --- | --- | --- |"
for op in seal open; do
  for cipher in chacha20-poly1305@openssh.com aes128-gcm@openssh.com aes256-gcm@openssh.com; do
    for size in 1500 32768; do
      ours=$(median_ns "$op/${cipher}_sshvpn/$size")
      raw=$(median_ns "$op/${cipher}_raw/$size")
      awk -v op="$op" -v c="$cipher" -v n="$size" -v a="$ours" -v b="$raw" 'BEGIN {
        printf "| %s | %s | %d | %.0f ns (%.2f Gbit/s) | %.0f ns (%.2f Gbit/s) | %.2f |\n",
          op, c, n, a, n * 8 / a, b, n * 8 / b, a / b }'
    done
  done
done
echo
echo "| key exchange (both sides' arithmetic, no signatures) | median |"
echo "| --- | --- |"
for kex in mlkem768x25519-sha256 sntrup761x25519-sha512 curve25519-sha256; do
  t=$(median_ns "kex/$kex")
  awk -v k="$kex" -v t="$t" 'BEGIN { printf "| %s | %.2f ms |\n", k, t / 1e6 }'
done
