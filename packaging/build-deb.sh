#!/usr/bin/env bash
# Builds the Debian package from this workspace: target/debian/sshvpn_VERSION_ARCH.deb.
#   PROFILE=release (default) or debug: which cargo build to package.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build --release -q -p sshvpnd -p sshvpnctl; else cargo build -q -p sshvpnd -p sshvpnctl; fi
bin=${CARGO_TARGET_DIR:-target}/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
root=${CARGO_TARGET_DIR:-target}/debian/root
rm -rf "$root"
install -D -m 0755 "$bin/sshvpnd" "$root/usr/sbin/sshvpnd"
install -D -m 0755 "$bin/sshvpnctl" "$root/usr/bin/sshvpnctl"
for unit in sshvpnd.service sshvpnd@.service sshvpnd.socket; do
  install -D -m 0644 "packaging/systemd/$unit" "$root/lib/systemd/system/$unit"
done
install -D -m 0644 packaging/man/sshvpnd.8 "$root/usr/share/man/man8/sshvpnd.8"
install -D -m 0644 packaging/man/sshvpnctl.1 "$root/usr/share/man/man1/sshvpnctl.1"
install -D -m 0644 packaging/man/sshvpnd.toml.5 "$root/usr/share/man/man5/sshvpnd.toml.5"
gzip -9n "$root"/usr/share/man/man*/*
mkdir -p "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$bin/sshvpnctl" completions bash > "$root/usr/share/bash-completion/completions/sshvpnctl"
"$bin/sshvpnctl" completions zsh > "$root/usr/share/zsh/vendor-completions/_sshvpnctl"
"$bin/sshvpnctl" completions fish > "$root/usr/share/fish/vendor_completions.d/sshvpnctl.fish"
docs="$root/usr/share/doc/sshvpn"
install -D -m 0644 README.md "$docs/README.md"
for f in configs/*.toml; do install -D -m 0644 "$f" "$docs/examples/$(basename "$f")"; done
install -D -m 0644 packaging/debian/copyright "$docs/copyright"
mkdir -p "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control.in > "$root/DEBIAN/control"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
deb=${CARGO_TARGET_DIR:-target}/debian/sshvpn_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
