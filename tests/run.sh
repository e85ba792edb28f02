#!/usr/bin/env bash
# The whole test suite: installs what the tests need when missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# A C compiler for the crates that build C and assembly (aws-lc-sys, the packet ciphers).
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
# ssh-audit comes from PyPI: Debian 12's package (2.5.0) predates strict kex (ssh-audit 3.1).
if ! command -v ssh-audit >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test prerequisites: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing ${need[*]} and not root; install them or run as root" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
if ! command -v ssh-audit >/dev/null 2>&1; then
  echo "installing test prerequisite: ssh-audit 3.9.0 (PyPI)"
  # Debian's own python3 refuses pip installs without this (PEP 668); older pips ignore it.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q 'ssh-audit==3.9.0'
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
