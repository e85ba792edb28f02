#!/usr/bin/env bash
# Micro-benchmarks (criterion): seal/open per cipher, sshvpn's packet layer against the bare
# AEAD work of aws-lc-rs (its backend) and of RustCrypto's crates (its former one) on the same
# buffer sizes, and one key exchange per method. Prints a table of medians and the ratios.
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

gbps() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f ns (%.2f Gbit/s)", t, n * 8 / t }'; }
echo "| operation | cipher | bytes | sshvpn | RustCrypto raw | aws-lc-rs raw | sshvpn / aws-lc-rs time | RustCrypto / aws-lc-rs time |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for op in seal open; do
  for cipher in chacha20-poly1305@openssh.com aes128-gcm@openssh.com aes256-gcm@openssh.com; do
    for size in 1500 32768; do
      ours=$(median_ns "$op/${cipher}_sshvpn/$size")
      rc=$(median_ns "$op/${cipher}_rustcrypto/$size")
      lc=$(median_ns "$op/${cipher}_aws-lc-rs/$size")
      printf '| %s | %s | %d | %s | %s | %s | ' "$op" "$cipher" "$size" \
        "$(gbps "$size" "$ours")" "$(gbps "$size" "$rc")" "$(gbps "$size" "$lc")"
      awk -v a="$ours" -v b="$rc" -v d="$lc" 'BEGIN { printf "%.2f | %.2f |\n", a / d, b / d }'
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
