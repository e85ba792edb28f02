#!/usr/bin/env bash
# sshvpnd against OpenSSH, measured in the same run, alternating, on two network namespaces
# joined by a veth pair (client "C", server "S"). Prints one markdown table of medians and the
# ratio sshvpnd / OpenSSH per figure. Needs root, iperf3, ssh and sshd. See BENCHMARKS.md.
#   ROUNDS=5 SECS=5 CIPHERS="aes256-gcm@openssh.com chacha20-poly1305@openssh.com" bash tests/bench/run.sh
# PARTS picks the figures (default: all): fwd socks tunsshd fwdv tunv wan lat ref first mem many.
# Part "wan" runs forwards and TUN over a second path with WAN_MS of delay each way (default 20: a 40 ms
# round trip), through a router namespace whose wire is `netprobe delay`, with the kernel's
# socket buffer limits as they are; WAN_SOCKET_MAX=33554432 raises the most TCP may buffer per
# socket (tcp_rmem, tcp_wmem) to that in both hosts, as one tunes a host for long fast paths.
# Part "wan" also puts a token bucket of WAN_SLOW (default 8mbit) on that path and times a
# keystroke (one byte to an echo and back) through one forward while another forward on the
# same connection uploads: what a user typing in a session beside a transfer feels.
# BASELINE=/path/to/an/other/sshvpnd adds that build to part "lat" (a link to sshd and one to
# a server of its own), pinged in the same turns: an A/B of two builds, with OpenSSH alongside.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
CIPHERS=${CIPHERS:-"aes256-gcm@openssh.com chacha20-poly1305@openssh.com"}
CLIENTS=${CLIENTS:-500}
PARTS=" ${PARTS:-fwd socks tunsshd fwdv tunv wan lat ref first mem many} "
WAN_MS=${WAN_MS:-20}
WAN_SOCKET_MAX=${WAN_SOCKET_MAX:-}
WAN_SLOW=${WAN_SLOW:-8mbit}
WAN_RTT=$(awk -v ms="$WAN_MS" 'BEGIN {print 2 * ms}')  # ms, for the rows' labels
want() { [[ $PARTS == *" $1 "* ]]; }
for p in iperf3 ssh ssh-keygen ip ping tc; do command -v $p >/dev/null || { echo "bench: $p is missing" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces, TUN)" >&2; exit 1; }
BASELINE=${BASELINE:-}
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "bench: BASELINE=$BASELINE is not an executable" >&2; exit 1; }
cargo build --release -q -p sshvpnd -p sshvpnctl -p sshvpn-tests --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/sshvpn-bench.XXXXXX)
C=svbc$$; S=svbs$$; M=svbm$$
cleanup() {
  # No "Killed" notice for each service stopped below: the subshells that run `inC … &` and
  # `inS … &` would print one for their child, so they go first, and the jobs are forgotten.
  kill -9 $(jobs -p) 2>/dev/null || true; disown -a 2>/dev/null || true
  for ns in $C $S $M; do ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del $ns 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
inC() { ip netns exec $C "$@"; }
inS() { ip netns exec $S "$@"; }
ip netns add $C; ip netns add $S
ip link add bvc$$ netns $C type veth peer name bvs$$ netns $S
ip -n $C addr add 10.210.0.1/24 dev bvc$$; ip -n $S addr add 10.210.0.2/24 dev bvs$$
for ns in $C $S; do ip -n $ns link set lo up; done
ip -n $C link set bvc$$ up; ip -n $S link set bvs$$ up
# Part "wan": C 10.211.0.1 — router M — S 10.211.1.2. M routes what it forwards into its TUN
# device "dly"; netprobe delay writes each packet back WAN_MS later, and M sends it on by its
# main table. Jumbo frames, so that the delay box's per-packet work is not what limits.
if want wan; then
  ip netns add $M; ip -n $M link set lo up
  ip link add wc$$ netns $C mtu 9000 type veth peer name wmc$$ netns $M mtu 9000
  ip link add ws$$ netns $S mtu 9000 type veth peer name wms$$ netns $M mtu 9000
  ip -n $C addr add 10.211.0.1/24 dev wc$$; ip -n $M addr add 10.211.0.254/24 dev wmc$$
  ip -n $S addr add 10.211.1.2/24 dev ws$$; ip -n $M addr add 10.211.1.254/24 dev wms$$
  ip -n $C link set wc$$ up; ip -n $S link set ws$$ up; ip -n $M link set wmc$$ up; ip -n $M link set wms$$ up
  ip -n $C route add 10.211.1.0/24 via 10.211.0.254; ip -n $S route add 10.211.0.0/24 via 10.211.1.254
  ip netns exec $M sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ip netns exec $M "$bin/netprobe" delay dly 9000 "$WAN_MS" 0 > "$work/delay.out" 2>&1 &
  for _ in $(seq 100); do grep -q ready "$work/delay.out" && break; sleep 0.05; done
  grep -q ready "$work/delay.out" || { echo "bench: the delay box did not start: $(cat "$work/delay.out")" >&2; exit 1; }
  ip -n $M link set dly up; ip netns exec $M sysctl -qw net.ipv4.conf.dly.rp_filter=0
  ip -n $M route add default dev dly table 100
  ip -n $M rule add iif wmc$$ lookup 100 pref 100; ip -n $M rule add iif wms$$ lookup 100 pref 101
fi

ssh-keygen -q -t ed25519 -N '' -f "$work/host" ; ssh-keygen -q -t ed25519 -N '' -f "$work/user"
cp "$work/user.pub" "$work/authorized_keys"
mkdir -p /run/sshd
cat > "$work/sshd_config" <<CFG
Port 22
ListenAddress 10.210.0.2
HostKey $work/host
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
PermitRootLogin prohibit-password
PermitTunnel point-to-point
MaxStartups 2000
MaxSessions 2000
$(want wan && echo "ListenAddress 10.211.1.2")
CFG
inS /usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
cat > "$work/server.toml" <<CFG
[daemon]
control_socket = "$work/server.sock"
state_dir = "$work/server-state"
[server]
listen = ["10.210.0.2:2222"$(want wan && echo ', "10.211.1.2:2222"')]
host_keys = ["$work/host"]
authorized_keys = "$work/authorized_keys"
tun_pool = "10.78.0.0/24"
max_startups = 2000
max_startups_per_source = 2000
CFG
inS "$bin/sshvpnd" -c "$work/server.toml" 2>"$work/server.log" &
if [ -n "$BASELINE" ]; then
  sed -e "s/:2222/:2223/g; s/10.78.0.0/10.77.0.0/; s/server\([.-]\)/baseline\1/g" "$work/server.toml" > "$work/baseline.toml"
  inS "$BASELINE" -c "$work/baseline.toml" 2>"$work/baseline.log" &
fi
inS iperf3 -s -D -p 5201 >/dev/null
inS "$bin/netprobe" sink-forever 0.0.0.0:5400 >/dev/null &
inS "$bin/netprobe" echo-forever 0.0.0.0:5401 >/dev/null &
# The reference relay pair (part "ref"): client 127.0.0.1:6030 → server → iperf3, no SSH.
inS "$bin/netprobe" relay 10.210.0.2:6031 127.0.0.1:5201 >/dev/null &
inC "$bin/netprobe" relay 127.0.0.1:6030 10.210.0.2:6031 >/dev/null &
echo "10.210.0.2 $(cut -d' ' -f1,2 "$work/host.pub")" > "$work/known_hosts"
echo "10.211.1.2 $(cut -d' ' -f1,2 "$work/host.pub")" >> "$work/known_hosts"
for host in 10.210.0.2 10.211.1.2; do for port in 2222 2223; do echo "[$host]:$port $(cut -d' ' -f1,2 "$work/host.pub")" >> "$work/known_hosts"; done; done
sleep 1

SSH=(ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -o IdentitiesOnly=yes -i "$work/user")
# Listening, checked without connecting (a probe through a forward would upset iperf3 -s).
wait_port() { for _ in $(seq 200); do inC ss -Hltn "sport = :$1" | grep -q LISTEN && return 0; sleep 0.05; done; echo "bench: port $1 never opened" >&2; return 1; }
# Gbit/s received, or "nan" (a failed run must not end the benchmark).
# One iperf3 run; once more a second later if the server was still busy with the last one
# (seen after a tunnel was stopped right after its run).
iperf() {
  local v try
  for try in 1 2; do
    v=$(inC iperf3 -c "$1" -p "${2:-5201}" -t "$SECS" -f g ${3:-} 2>/dev/null | awk '/receiver/ {print $7}' || true)
    [ -n "$v" ] && break; sleep 1
  done
  echo "${v:-nan}"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# Median RTT (ms) of the pings in a ping(8) log: one slow first packet must not decide it.
rtt_of() { sed -n 's/.*time=\([0-9.]*\) ms/\1/p' "$1" | median; }
# Added latency (ms) of the pings to $1: their median RTT minus $2, the bare veth's.
added() { awk -v a="$(rtt_of "$work/ping-$1")" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# How often a process woke (context switches of all its threads) in IDLE_SECS of quiet.
IDLE_SECS=${IDLE_SECS:-10}
switches() { cat /proc/$1/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
wakeups_in() { local a; a=$(switches $1); sleep "$IDLE_SECS"; echo $(( $(switches $1) - a )); }
declare -A R
# Median round trip (ms) of a byte through the echo forward on port $2 while iperf3 uploads
# through the forward on port $1.
keystroke() {
  local I; ip netns exec $C iperf3 -c 127.0.0.1 -p "$1" -t 60 >/dev/null 2>&1 & I=$!
  sleep 3
  # An upload that did not start (iperf3's server still busy) would time an idle path.
  if kill -0 $I 2>/dev/null; then inC "$bin/netprobe" echo-rtt "127.0.0.1:$2" 20 200 | awk '{print $1}' || echo nan; else echo nan; fi
  stop $I; sleep 1
}

client_cfg() { # name cipher extra…
  cat > "$work/$1.toml" <<CFG
[daemon]
control_socket = "$work/$1.sock"
state_dir = "$work/$1-state"
[[link]]
name = "b"
host = "10.210.0.2"
port = ${3:-22}
user = "root"
identity = "$work/user"
known_hosts = "$work/known_hosts"
ciphers = ["$2"]
$4
CFG
}
start_vpnd() { ip netns exec $C "${2:-$bin/sshvpnd}" -c "$work/$1.toml" 2>"$work/$1.log" & VPND=$!; for _ in $(seq 200); do "$bin/sshvpnctl" --socket "$work/$1.sock" --json status 2>/dev/null | grep -q '"state":"up"' && return 0; sleep 0.05; done; echo "bench: link $1 did not come up" >&2; cat "$work/$1.log" >&2; return 1; }
stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }
sshd_tun() { for _ in $(seq 100); do t=$(ip -n $S -o link show | grep -o 'tun[0-9]*' | tail -1 || true); [ -n "$t" ] && break; sleep 0.05; done; ip -n $S addr replace 10.79.0.1/30 dev "$t"; ip -n $S link set "$t" up; }
# With several tunnels to sshd at once: its devices, and the one not in $1 configured as $2.
sshd_tuns() { ip -n $S -o link show | grep -o 'tun[0-9]*' | sort -u || true; }
new_sshd_tun() {
  local t=""; for _ in $(seq 100); do t=$(comm -13 <(echo "$1") <(sshd_tuns) | head -1); [ -n "$t" ] && break; sleep 0.05; done
  ip -n $S addr replace "$2" dev "$t"; ip -n $S link set "$t" up; }

# Pings the three tunnels of part "lat" and the bare veth one at a time, 300 each, 10 ms
# apart, in an order that rotates with the round; $1 names the state ("" fresh, "b" after
# bulk) in the figures' keys. Keeps the added latency: each tunnel's median RTT minus the
# bare veth's, measured in the same turn. Pinged alone, as a user pings a tunnel: pinging
# them all at once (as the fifth and sixth measurements did) let the tunnels' processes
# keep each other's CPUs awake and hid part of what each one costs.
ping_all() {
  local fars=(10.79.0.1 10.79.1.1 10.78.0.1 10.210.0.2) i far
  [ -z "$BASELINE" ] || fars+=(10.79.2.1 10.77.0.1)
  for i in "${!fars[@]}"; do
    far=${fars[$(( (i + round) % ${#fars[@]} ))]}
    inC ping -c 300 -i 0.01 $far > "$work/ping-$far" 2>&1 || true
  done
  local veth; veth=$(rtt_of "$work/ping-10.210.0.2")
  R[lat$1_ossh_$short]+="$(added 10.79.0.1 $veth) "; R[lat$1_vpnd_$short]+="$(added 10.79.1.1 $veth) "
  R[latv$1_vpnd_$short]+="$(added 10.78.0.1 $veth) "; R[lat_veth]+="$veth "
  [ -z "$BASELINE" ] || { R[lat$1_base_$short]+="$(added 10.79.2.1 $veth) "; R[latv$1_base_$short]+="$(added 10.77.0.1 $veth) "; }
}

for cipher in $CIPHERS; do
  short=${cipher%%@*}
  for round in $(seq "$ROUNDS"); do
    if want fwd; then
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -L 127.0.0.1:6001:10.210.0.2:5201 root@10.210.0.2 & P=$!; wait_port 6001
      R[fwd_ossh_$short]+="$(iperf 127.0.0.1 6001) "; stop $P
    fi
    if want fwd || want socks; then
      client_cfg fwd "$cipher" 22 $'[[link.forward]]\nlisten = "127.0.0.1:6002"\nconnect = "10.210.0.2:5201"\n[[link.socks]]\nlisten = "127.0.0.1:6003"'
      start_vpnd fwd
      want fwd && R[fwd_vpnd_$short]+="$(iperf 127.0.0.1 6002) "
      want socks && R[socks_vpnd_$short]+="$(inC "$bin/netprobe" socks-send 127.0.0.1:6003 10.210.0.2:5400 "$SECS") "
      stop $VPND
    fi
    if want socks; then
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -D 127.0.0.1:6004 root@10.210.0.2 & P=$!; wait_port 6004
      R[socks_ossh_$short]+="$(inC "$bin/netprobe" socks-send 127.0.0.1:6004 10.210.0.2:5400 "$SECS") "; stop $P
    fi
    # TUN to sshd: ssh -w, then an sshvpnd link. ssh -w is also the reference for the
    # sshvpnd↔sshvpnd TUN row.
    if want tunsshd || want tunv; then
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -w any:any -o Tunnel=point-to-point root@10.210.0.2 & P=$!
      for _ in $(seq 100); do t=$(ip -n $C -o link show | grep -o 'tun[0-9]*' | head -1 || true); [ -n "$t" ] && break; sleep 0.05; done
      ip -n $C addr add 10.79.0.2/30 dev "$t"; ip -n $C link set "$t" up; sshd_tun
      R[tunsshd_ossh_$short]+="$(iperf 10.79.0.1) "; stop $P
    fi
    if want tunsshd; then
      client_cfg tun "$cipher" 22 $'[link.tun]\nlocal = "10.79.0.2/30"\nmtu = 1500'
      start_vpnd tun; sshd_tun
      R[tunsshd_vpnd_$short]+="$(iperf 10.79.0.1) "; stop $VPND
    fi
    # -L and SOCKS between two sshvpnd (the server end is sshvpnd)
    if want fwdv; then
      client_cfg fwdv "$cipher" 2222 $'[[link.forward]]\nlisten = "127.0.0.1:6005"\nconnect = "10.210.0.2:5201"\n[[link.socks]]\nlisten = "127.0.0.1:6006"'
      start_vpnd fwdv; R[fwdv_vpnd_$short]+="$(iperf 127.0.0.1 6005) "
      R[socksv_vpnd_$short]+="$(inC "$bin/netprobe" socks-send 127.0.0.1:6006 10.210.0.2:5400 "$SECS") "; stop $VPND
    fi
    # TUN between two sshvpnd (the server end is sshvpnd with tun_pool)
    if want tunv; then
      client_cfg tunv "$cipher" 2222 $'[link.tun]\nmtu = 1500'
      start_vpnd tunv
      R[tunvpnd_vpnd_$short]+="$(iperf 10.78.0.1) "; stop $VPND
    fi
    # Forwards over the WAN path: each direction, through ssh -L, an sshvpnd link to sshd and
    # one to the sshvpnd server; then TUN, ssh -w against sshvpnd↔sshvpnd. What sets the pace
    # here is how much may be in flight: the receiver's channel window (2 MiB for sshd and ssh,
    # up to 16 MiB for sshvpnd) and the TCP send buffer (the kernel tunes it up to tcp_wmem's
    # maximum, 4 MiB by default; sshvpnd sets its own, and see WAN_SOCKET_MAX).
    if want wan; then
      wmem=$(inC sysctl -n net.ipv4.tcp_wmem); rmem=$(inC sysctl -n net.ipv4.tcp_rmem)
      if [ -n "$WAN_SOCKET_MAX" ]; then
        for ns in $C $S; do ip netns exec $ns sysctl -qw net.ipv4.tcp_wmem="4096 16384 $WAN_SOCKET_MAX" net.ipv4.tcp_rmem="4096 131072 $WAN_SOCKET_MAX"; done
      fi
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -L 127.0.0.1:6041:10.210.0.2:5201 root@10.211.1.2 & P=$!; wait_port 6041
      R[wanup_ossh_$short]+="$(iperf 127.0.0.1 6041) "; R[wandown_ossh_$short]+="$(iperf 127.0.0.1 6041 -R) "; stop $P
      client_cfg wan "$cipher" 22 $'[[link.forward]]\nlisten = "127.0.0.1:6042"\nconnect = "10.210.0.2:5201"'
      sed -i 's/^host = .*/host = "10.211.1.2"/' "$work/wan.toml"; start_vpnd wan
      R[wanup_vpnd_$short]+="$(iperf 127.0.0.1 6042) "; R[wandown_vpnd_$short]+="$(iperf 127.0.0.1 6042 -R) "; stop $VPND
      client_cfg wanv "$cipher" 2222 $'[[link.forward]]\nlisten = "127.0.0.1:6043"\nconnect = "10.210.0.2:5201"'
      sed -i 's/^host = .*/host = "10.211.1.2"/' "$work/wanv.toml"; start_vpnd wanv
      R[wanupv_vpnd_$short]+="$(iperf 127.0.0.1 6043) "; R[wandownv_vpnd_$short]+="$(iperf 127.0.0.1 6043 -R) "; stop $VPND
      # TUN over the same path: ssh -w to sshd, and sshvpnd↔sshvpnd.
      known=$(sshd_tuns)
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -w any:any -o Tunnel=point-to-point root@10.211.1.2 & P=$!
      for _ in $(seq 100); do t=$(ip -n $C -o link show | grep -o 'tun[0-9]*' | head -1 || true); [ -n "$t" ] && break; sleep 0.05; done
      ip -n $C addr add 10.79.0.2/30 dev "$t"; ip -n $C link set "$t" up; new_sshd_tun "$known" 10.79.0.1/30
      R[wantun_ossh_$short]+="$(iperf 10.79.0.1) "; stop $P
      client_cfg wantun "$cipher" 2222 $'[link.tun]\nmtu = 1500'
      sed -i 's/^host = .*/host = "10.211.1.2"/' "$work/wantun.toml"; start_vpnd wantun
      R[wantunv_vpnd_$short]+="$(iperf 10.78.0.1) "; stop $VPND
      # The path's own ceiling: iperf3 straight over it (with the same socket limits), through
      # the same delay box.
      [ "$cipher" = "${CIPHERS%% *}" ] && R[ref_wan]+="$(iperf 10.211.1.2) "
      for ns in $C $S; do ip netns exec $ns sysctl -qw net.ipv4.tcp_wmem="$wmem" net.ipv4.tcp_rmem="$rmem"; done
      # A keystroke behind an upload on a slow path: WAN_SLOW on the router's way to the
      # server; an upload through one forward, and one byte to the echo and back through a
      # second forward on the same connection (the median of 20, 200 ms apart, from 3 s into
      # the upload). With the first cipher only: what waits is a matter of queues.
      if [ "$cipher" = "${CIPHERS%% *}" ]; then
        ip netns exec $M tc qdisc add dev wms$$ root tbf rate "$WAN_SLOW" burst 32kb latency 50ms
        ip netns exec $C "${SSH[@]}" -c "$cipher" -N -L 127.0.0.1:6044:10.210.0.2:5201 -L 127.0.0.1:6045:10.210.0.2:5401 root@10.211.1.2 & P=$!
        wait_port 6045; R[slow_ossh]+="$(keystroke 6044 6045) "; stop $P
        for v in slow:22 slowv:2222; do
          name=${v%%:*}
          client_cfg $name "$cipher" ${v##*:} $'[[link.forward]]\nlisten = "127.0.0.1:6046"\nconnect = "10.210.0.2:5201"\n[[link.forward]]\nlisten = "127.0.0.1:6047"\nconnect = "10.210.0.2:5401"'
          sed -i 's/^host = .*/host = "10.211.1.2"/' "$work/$name.toml"; start_vpnd $name
          R[${name}_vpnd]+="$(keystroke 6046 6047) "; stop $VPND
        done
        ip netns exec $M tc qdisc del dev wms$$ root
      fi
    fi
    # Latency: ssh -w, an sshvpnd link to sshd and one to the sshvpnd server are up at once
    # and pinged in turn (ping_all): once fresh, and once more right after each tunnel
    # carried a bulk transfer, as a tunnel in use has.
    if want lat; then
      known=$(sshd_tuns)
      ip netns exec $C "${SSH[@]}" -c "$cipher" -N -w any:any -o Tunnel=point-to-point root@10.210.0.2 & P=$!
      for _ in $(seq 100); do t=$(ip -n $C -o link show | grep -o 'tun[0-9]*' | head -1 || true); [ -n "$t" ] && break; sleep 0.05; done
      ip -n $C addr add 10.79.0.2/30 dev "$t"; ip -n $C link set "$t" up; new_sshd_tun "$known" 10.79.0.1/30
      known=$(sshd_tuns)
      client_cfg lat1 "$cipher" 22 $'[link.tun]\nlocal = "10.79.1.2/30"\nmtu = 1500'
      start_vpnd lat1; V1=$VPND; new_sshd_tun "$known" 10.79.1.1/30
      client_cfg lat2 "$cipher" 2222 $'[link.tun]\nmtu = 1500'
      start_vpnd lat2; V2=$VPND; V3=; V4=
      if [ -n "$BASELINE" ]; then
        known=$(sshd_tuns)
        client_cfg latb1 "$cipher" 22 $'[link.tun]\nlocal = "10.79.2.2/30"\nmtu = 1500'
        start_vpnd latb1 "$BASELINE"; V3=$VPND; new_sshd_tun "$known" 10.79.2.1/30
        client_cfg latb2 "$cipher" 2223 $'[link.tun]\nmtu = 1500'
        start_vpnd latb2 "$BASELINE"; V4=$VPND
      fi
      ping_all ""
      for far in 10.79.0.1 10.79.1.1 10.78.0.1 ${V3:+10.79.2.1 10.77.0.1}; do inC iperf3 -c $far -t 1 >/dev/null 2>&1 || true; done
      ping_all b
      stop $P $V1 $V2 $V3 $V4
    fi
    # Reference, no SSH at all: iperf3 over the bare veth, and through a plain TCP relay in
    # each namespace (netprobe relay: read and write through a buffer, no cipher), the most
    # that any two-process user-space tunnel can carry here.
    if want ref && [ "$cipher" = "${CIPHERS%% *}" ]; then
      R[ref_veth]+="$(iperf 10.210.0.2) "
      R[ref_relay]+="$(iperf 127.0.0.1 6030) "
    fi
  done
done

if want first; then
# Start to first byte through a forward (echo service on the server side).
for round in $(seq "$ROUNDS"); do
  t0=$(date +%s.%N)
  ip netns exec $C "${SSH[@]}" -N -L 127.0.0.1:6011:10.210.0.2:5401 root@10.210.0.2 & P=$!
  fb=$(inC "$bin/netprobe" first-byte 127.0.0.1:6011 20); stop $P
  R[first_ossh]+="$(echo "$(date +%s.%N) $t0 $fb" | awk '{print $3}') "
  client_cfg fb aes256-gcm@openssh.com 22 $'[[link.forward]]\nlisten = "127.0.0.1:6012"\nconnect = "10.210.0.2:5401"'
  sed -i 's/^ciphers = .*//' "$work/fb.toml"
  ip netns exec $C "$bin/sshvpnd" -c "$work/fb.toml" 2>"$work/fb.log" & VPND=$!
  R[first_vpnd]+="$(inC "$bin/netprobe" first-byte 127.0.0.1:6012 20) "; stop $VPND
done
fi

if want mem; then
# Memory: one idle link, then 1,000 concurrent SOCKS connections, then after they close.
client_cfg mem aes256-gcm@openssh.com 22 $'[[link.socks]]\nlisten = "127.0.0.1:6021"'
start_vpnd mem; sleep 0.5
R[rss_idle_vpnd]=$(rss_kib $VPND)
R[idle_vpnd]=$(wakeups_in $VPND)
exec 5> >(inC "$bin/netprobe" socks-hold 127.0.0.1:6021 10.210.0.2:5400 1000 > "$work/hold.out")
for _ in $(seq 400); do grep -q held "$work/hold.out" 2>/dev/null && break; sleep 0.05; done
R[rss_1000_vpnd]=$(rss_kib $VPND)
grep -q "held 1000" "$work/hold.out" || echo "bench: only $(cat "$work/hold.out") SOCKS connections through sshvpnd" >&2
exec 5>&-; sleep 3
R[rss_after_vpnd]=$(rss_kib $VPND); stop $VPND
ip netns exec $C "${SSH[@]}" -N -D 127.0.0.1:6022 root@10.210.0.2 & P=$!; wait_port 6022; sleep 0.5
# The ssh client plus this connection's sshd processes (privileged monitor and session).
ossh_rss() { local s=$(rss_kib $P); for q in $(pgrep -f "^sshd: root"); do s=$((s + $(rss_kib $q))); done; echo $s; }
R[rss_idle_ossh]=$(ossh_rss)
R[idle_ossh]=$(wakeups_in $P)
exec 5> >(inC "$bin/netprobe" socks-hold 127.0.0.1:6022 10.210.0.2:5400 1000 > "$work/hold2.out")
for _ in $(seq 400); do grep -q held "$work/hold2.out" 2>/dev/null && break; sleep 0.05; done
R[rss_1000_ossh]=$(ossh_rss)
exec 5>&-; sleep 3; R[rss_after_ossh]=$(ossh_rss); stop $P
fi

if want many; then
# Server side: one sshvpnd client with $CLIENTS links, each holding two channels through a
# -L forward, against the sshvpnd server and against sshd. Both servers see the same client and
# the same key exchange (curve25519-sha256), so the figures compare the servers alone.
many_cfg() { # name port
  { printf '[daemon]\ncontrol_socket = "%s"\nstate_dir = "%s"\n' "$work/$1.sock" "$work/$1-state"
    for i in $(seq 0 $((CLIENTS - 1))); do
      printf '[[link]]\nname = "c%d"\nhost = "10.210.0.2"\nport = %d\nuser = "root"\nidentity = "%s"\nknown_hosts = "%s"\nkex = ["curve25519-sha256"]\n' \
        "$i" "$2" "$work/user" "$work/known_hosts"
      printf '[[link.forward]]\nlisten = "127.0.0.1:%d"\nconnect = "10.210.0.2:5401"\n' $((20000 + i))
    done; } > "$work/$1.toml"
}
# CPU seconds (user + system) of processes $@, plus what their reaped children used.
cpu_s() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; awk -v t=$t -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'; }
sshd_pids() { ip netns pids $S | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = sshd ] && echo $p; done; }
server_pid() { ip netns pids $S | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = sshvpnd ] && echo $p; done; }
many() { # name port → RSS KiB and CPU s of the server processes while the channels are held
  local pids_fn=$3 before after rss=0
  many_cfg "$1" "$2"
  before=$(cpu_s $($pids_fn))
  ip netns exec $C "$bin/sshvpnd" -c "$work/$1.toml" 2>"$work/$1.log" & VPND=$!
  for _ in $(seq 1200); do
    [ "$("$bin/sshvpnctl" --socket "$work/$1.sock" --json status 2>/dev/null | grep -o '"state":"up"' | wc -l)" -ge "$CLIENTS" ] && break; sleep 0.1
  done
  exec 6> >(inC "$bin/netprobe" tcp-hold 127.0.0.1 20000 "$CLIENTS" 2 > "$work/$1.hold")
  for _ in $(seq 1200); do grep -q held "$work/$1.hold" 2>/dev/null && break; sleep 0.1; done
  grep -q "held $((CLIENTS * 2))" "$work/$1.hold" || echo "bench: $1: only '$(cat "$work/$1.hold")' channels held" >&2
  # PSS, not RSS: sshd's thousand processes share their code pages, which RSS would count
  # once per process.
  for p in $($pids_fn); do rss=$((rss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
  after=$(cpu_s $($pids_fn))
  exec 6>&-; stop $VPND; sleep 1
  echo "bench: $1: $CLIENTS clients, $(cat "$work/$1.hold") channels, server PSS $rss KiB" >&2
  R[many_rss_$1]=$rss; R[many_cpu_$1]=$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}')
}
many vpnd 2222 server_pid
many ossh 22 sshd_pids
fi

row() { # label vpnd-values ossh-values unit higher-is-better
  [ -z "${2// }${3// }" ] && return 0 # a part PARTS left out
  local v o; v=$(echo $2 | tr ' ' '\n' | { grep -v '^$' || true; } | median); o=$(echo $3 | tr ' ' '\n' | { grep -v '^$' || true; } | median)
  printf "| %s | %s %s | %s %s | %s |\n" "$1" "$v" "$4" "$o" "$4" "$(awk -v a="$v" -v b="$o" 'BEGIN { if (b+0 == 0) print "-"; else printf "%.2f", a/b }')"
}
echo
echo "| figure | sshvpnd | OpenSSH | ratio sshvpnd/OpenSSH |"
echo "| --- | --- | --- | --- |"
for cipher in $CIPHERS; do
  s=${cipher%%@*}
  row "TUN sshvpnd↔sshvpnd vs ssh -w↔sshd ($s)" "${R[tunvpnd_vpnd_$s]:-}" "${R[tunsshd_ossh_$s]:-}" "Gbit/s"
  row "TUN to sshd ($s)" "${R[tunsshd_vpnd_$s]:-}" "${R[tunsshd_ossh_$s]:-}" "Gbit/s"
  row "forward -L ($s)" "${R[fwd_vpnd_$s]:-}" "${R[fwd_ossh_$s]:-}" "Gbit/s"
  row "SOCKS5 -D ($s)" "${R[socks_vpnd_$s]:-}" "${R[socks_ossh_$s]:-}" "Gbit/s"
  row "forward -L sshvpnd↔sshvpnd vs ssh -L↔sshd ($s)" "${R[fwdv_vpnd_$s]:-}" "${R[fwd_ossh_$s]:-}" "Gbit/s"
  row "SOCKS5 sshvpnd↔sshvpnd vs ssh -D↔sshd ($s)" "${R[socksv_vpnd_$s]:-}" "${R[socks_ossh_$s]:-}" "Gbit/s"
  row "TUN over a $WAN_RTT ms round trip: sshvpnd↔sshvpnd vs ssh -w↔sshd ($s)" "${R[wantunv_vpnd_$s]:-}" "${R[wantun_ossh_$s]:-}" "Gbit/s"
  row "forward over a $WAN_RTT ms round trip, upload: sshvpnd → sshd vs ssh -L ($s)" "${R[wanup_vpnd_$s]:-}" "${R[wanup_ossh_$s]:-}" "Gbit/s"
  row "forward over a $WAN_RTT ms round trip, download: sshvpnd → sshd vs ssh -L ($s)" "${R[wandown_vpnd_$s]:-}" "${R[wandown_ossh_$s]:-}" "Gbit/s"
  row "forward over a $WAN_RTT ms round trip, upload: sshvpnd↔sshvpnd vs ssh -L↔sshd ($s)" "${R[wanupv_vpnd_$s]:-}" "${R[wanup_ossh_$s]:-}" "Gbit/s"
  row "forward over a $WAN_RTT ms round trip, download: sshvpnd↔sshvpnd vs ssh -L↔sshd ($s)" "${R[wandownv_vpnd_$s]:-}" "${R[wandown_ossh_$s]:-}" "Gbit/s"
  row "added latency through a tunnel to sshd: ping RTT minus bare veth ($s; bare veth $(echo ${R[lat_veth]:-} | tr ' ' '\n' | median) ms)" "${R[lat_vpnd_$s]:-}" "${R[lat_ossh_$s]:-}" "ms"
  row "added latency sshvpnd↔sshvpnd vs ssh -w↔sshd ($s)" "${R[latv_vpnd_$s]:-}" "${R[lat_ossh_$s]:-}" "ms"
  row "added latency to sshd right after a bulk transfer ($s)" "${R[latb_vpnd_$s]:-}" "${R[latb_ossh_$s]:-}" "ms"
  row "added latency sshvpnd↔sshvpnd vs ssh -w↔sshd, after bulk ($s)" "${R[latvb_vpnd_$s]:-}" "${R[latb_ossh_$s]:-}" "ms"
  if [ -n "$BASELINE" ]; then
    row "added latency to sshd: this build (sshvpnd column) vs BASELINE (OpenSSH column) ($s)" "${R[lat_vpnd_$s]:-}" "${R[lat_base_$s]:-}" "ms"
    row "added latency sshvpnd↔sshvpnd: this build vs BASELINE ($s)" "${R[latv_vpnd_$s]:-}" "${R[latv_base_$s]:-}" "ms"
    row "added latency to sshd after bulk: this build vs BASELINE ($s)" "${R[latb_vpnd_$s]:-}" "${R[latb_base_$s]:-}" "ms"
    row "added latency sshvpnd↔sshvpnd after bulk: this build vs BASELINE ($s)" "${R[latvb_vpnd_$s]:-}" "${R[latvb_base_$s]:-}" "ms"
  fi
done
slow="a keystroke behind an upload over $WAN_SLOW and a $WAN_RTT ms round trip"
row "$slow: sshvpnd → sshd vs ssh -L (median round trip)" "${R[slow_vpnd]:-}" "${R[slow_ossh]:-}" "ms"
row "$slow: sshvpnd↔sshvpnd vs ssh -L↔sshd" "${R[slowv_vpnd]:-}" "${R[slow_ossh]:-}" "ms"
row "start to first byte through a forward" "${R[first_vpnd]:-}" "${R[first_ossh]:-}" "s"
row "RSS, one idle link (OpenSSH: ssh + sshd session)" "${R[rss_idle_vpnd]:-}" "${R[rss_idle_ossh]:-}" "KiB"
row "wakeups in ${IDLE_SECS}s, one idle link (sshvpnd client; ssh client)" "${R[idle_vpnd]:-}" "${R[idle_ossh]:-}" ""
row "RSS, 1,000 SOCKS connections" "${R[rss_1000_vpnd]:-}" "${R[rss_1000_ossh]:-}" "KiB"
row "RSS after they closed" "${R[rss_after_vpnd]:-}" "${R[rss_after_ossh]:-}" "KiB"
row "Server memory (PSS), ${CLIENTS:-500} clients × 2 channels (OpenSSH: all sshd processes)" "${R[many_rss_vpnd]:-}" "${R[many_rss_ossh]:-}" "KiB"
row "Server CPU to accept them and open the channels" "${R[many_cpu_vpnd]:-}" "${R[many_cpu_ossh]:-}" "s"
echo
if want ref; then
  echo "reference, no SSH: iperf3 over the bare veth $(echo ${R[ref_veth]} | tr ' ' '\n' | median) Gbit/s; through a plain TCP relay pair (netprobe relay, no cipher) $(echo ${R[ref_relay]} | tr ' ' '\n' | median) Gbit/s"
fi
if want wan; then
  echo "reference, no SSH: iperf3 straight over the delayed path ($WAN_RTT ms round trip${WAN_SOCKET_MAX:+, socket limits $WAN_SOCKET_MAX}) $(echo ${R[ref_wan]:-} | tr ' ' '\n' | median) Gbit/s"
fi
echo "rounds: $ROUNDS × ${SECS}s, $(nproc) cores, $(date -u +%Y-%m-%d)"
