#!/usr/bin/env bash
# Quick start: builds sshvpnd and sshvpnctl, generates a key, starts one sshvpnd that serves
# SSH on 127.0.0.1:2222 and keeps a link to itself with a SOCKS5 port on 127.0.0.1:1080, shows
# `sshvpnctl status`, and fetches the server's SSH banner through the SOCKS port.
# Stops the daemon when done (or keeps it with KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sshvpnd -p sshvpnctl
bin=target/release
dir=$(mktemp -d /tmp/sshvpn-quickstart.XXXXXX)
"$bin/sshvpnd" --generate-key "$dir/id_ed25519" >/dev/null
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
sed "s|@DIR@|$dir|g" configs/quickstart.toml > "$dir/sshvpnd.toml"
"$bin/sshvpnd" --check-config -c "$dir/sshvpnd.toml"
"$bin/sshvpnd" -c "$dir/sshvpnd.toml" 2>"$dir/sshvpnd.log" &
pid=$!
[ "${KEEP:-0}" = 1 ] || trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
ctl() { "$bin/sshvpnctl" --socket "$dir/control.sock" "$@"; }
for _ in $(seq 100); do
  if ctl --json status 2>/dev/null | grep -q '"state":"up"'; then break; fi
  sleep 0.1
done
ctl status
# SOCKS5 by hand (RFC 1928): no auth, CONNECT 127.0.0.1:2222, then read what comes back.
exec 3<>/dev/tcp/127.0.0.1/1080
printf '\x05\x01\x00' >&3
head -c 2 <&3 >/dev/null
printf '\x05\x01\x00\x01\x7f\x00\x00\x01\x08\xae' >&3
head -c 10 <&3 >/dev/null
banner=$(head -n 1 <&3 | tr -d '\r')
exec 3>&-
echo "through the SOCKS port, 127.0.0.1:2222 says: $banner"
case "$banner" in SSH-2.0-sshvpn*) echo "quick start: ok" ;; *) echo "quick start: FAILED (log: $dir/sshvpnd.log)"; exit 1 ;; esac
echo "try: curl --socks5-hostname 127.0.0.1:1080 https://example.com   (or: sshvpnctl --socket $dir/control.sock exec quickstart -- curl …)"
if [ "${KEEP:-0}" = 1 ]; then echo "sshvpnd keeps running (pid $pid); config in $dir/sshvpnd.toml"; fi
