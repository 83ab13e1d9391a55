#!/usr/bin/env bash
# A second "host" for SSH tests, as root:
#   - network namespace NAME with only `lo` (up): its own 127.0.0.1 and ports;
#   - its own UTS namespace, so `hostname` on it prints NAME;
#   - a private sshd (tests/infra/sshd.sh) on 127.0.0.1:22 *inside* the namespace,
#     key-only, user covtest, files in DIR (DIR/client_key is the login key).
# Clients reach it through a ProxyCommand, so every packet stays on a loopback:
#   ProxyCommand: ip netns exec NAME nc 127.0.0.1 22
#   ssh -F DIR/ssh_config NAME hostname             # prints NAME
#   Fabric: Connection(NAME, user='covtest', gateway='ip netns exec NAME nc 127.0.0.1 22',
#                      connect_kwargs={'key_filename': DIR + '/client_key'})
# Only the network and the hostname are separate: files, users and PIDs are shared
# with the controller, so give each host its own remote work dir.
#
#   bash tests/infra/netns_host.sh start NAME DIR
#   bash tests/infra/netns_host.sh stop  NAME DIR     # stops sshd, deletes the namespace
# Both idempotent. NAME: at most 63 characters of [A-Za-z0-9_.-] (it is a hostname too).
# DIR must be reachable by user covtest (see sshd.sh): not under pytest's 0700 tmp dirs.
set -euo pipefail
# root's tools (sshd, useradd, ip, slurmctld, munged) live in sbin; PATH may lack it
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
HERE=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop NAME DIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
CMD=$1
NAME=$2
DIR=$3
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || { echo "netns_host.sh: bad NAME '$NAME'" >&2; exit 2; }

ns_exists() { [ -e "/run/netns/$NAME" ]; }

case "$CMD" in
  start)
    for b in ip nc unshare; do
      command -v "$b" >/dev/null || { echo "netns_host.sh: '$b' missing; run tests/infra/install_system_deps.sh" >&2; exit 1; }
    done
    ns_exists || ip netns add "$NAME"
    ip -n "$NAME" link set lo up
    SSHD_ADDR=127.0.0.1 SSHD_NETNS="$NAME" SSHD_HOSTNAME="$NAME" SSHD_HOST_ALIAS="$NAME" \
      bash "$HERE/sshd.sh" start "$DIR" 22
    ;;
  stop)
    bash "$HERE/sshd.sh" stop "$DIR"
    if ns_exists; then
      # Anything else still running inside (e.g. a stray nc) would keep it busy.
      pids=$(ip netns pids "$NAME" 2>/dev/null || true)
      [ -n "$pids" ] && kill $pids 2>/dev/null || true
      ip netns del "$NAME" 2>/dev/null || true
    fi
    ;;
  *) usage ;;
esac
