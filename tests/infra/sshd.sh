#!/usr/bin/env bash
# A private, key-only sshd for tests, as root. Everything lives in DIR; nothing in
# /etc/ssh is read or changed.
#
#   bash tests/infra/sshd.sh start DIR [PORT]     # PORT defaults to 2222
#   bash tests/infra/sshd.sh stop  DIR
#
# Files in DIR: host_ed25519 (host key), client_key (+.pub; the key to log in with),
# authorized_keys, sshd_config, sshd.pid, sshd.log, known_hosts (host key of this
# server, for OpenSSH clients), ssh_config (a ready client config, Host "covtest").
#
# Logs in as the unprivileged user covtest (override: SSHD_TEST_USER). The user
# is shared by every sshd on the machine (users are global), so it has one home,
# outside any DIR: ${COVTEST_HOME:-/home/covtest}, created empty (no skeleton
# files, so no .bashrc: root's .bashrc here runs `pyenv init`, ~100 ms per remote
# command), owned and writable by the user. The account is unlocked with
# `usermod -p '*'` (sshd refuses a locked account when UsePAM=no).
#
# DIR must be reachable by that user (sshd reads authorized_keys as the user):
# this script makes DIR 0711, but its parents must be traversable too, so do
# not put DIR under pytest's 0700 tmp dirs; /tmp/some-dir is fine.
#
# Optional environment (used by netns_host.sh):
#   SSHD_ADDR=127.0.0.1   address to listen on
#   SSHD_NETNS=NAME       run sshd inside this existing network namespace
#   SSHD_HOSTNAME=NAME    run sshd in its own UTS namespace with this hostname
#   SSHD_HOST_ALIAS=NAME  name clients use for it (known_hosts / ssh_config)
#
# Idempotent: `start` while the PID file points at a live sshd does nothing,
# `stop` without a live sshd does nothing. Readiness: waits (max 5 s) until
# sshd logs "Server listening on", so a port taken by someone else is an error,
# not a false success.
set -euo pipefail
# root's tools (sshd, useradd, ip, slurmctld, munged) live in sbin; PATH may lack it
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

usage() { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }
[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
PORT=${3:-${SSHD_PORT:-2222}}
ADDR=${SSHD_ADDR:-127.0.0.1}
NETNS=${SSHD_NETNS:-}
HOSTNAME_NS=${SSHD_HOSTNAME:-}
TEST_USER=${SSHD_TEST_USER:-covtest}
TEST_HOME=${COVTEST_HOME:-/home/$TEST_USER}

# A PID counts as running unless it is gone or a zombie (PID 1 here reaps late).
running() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

stop() {
  local pidf="$DIR/sshd.pid" pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  # Only kill it if it really is an sshd (the PID may have been reused).
  if running "$pid" && grep -qa sshd "/proc/$pid/cmdline" 2>/dev/null; then
    # its per-connection children too, so no session outlives the server
    local kids
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "$pid" $kids 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.02; done
    running "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

ensure_user() {
  # Serialise: several sessions (pytest-xdist workers) may start sshds at once.
  mkdir -p /run/lock
  exec 9>/run/lock/cov-test-user.lock
  flock 9
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd -M -d "$TEST_HOME" -s /bin/bash "$TEST_USER"
  fi
  # '!' (locked, what useradd sets) is refused by sshd when UsePAM=no. Only a locked account is
  # changed: a test may have set a password for its own length (a second session starting
  # its sshd meanwhile must not take it away).
  if [ "$(getent shadow "$TEST_USER" | cut -d: -f2 | cut -c1)" = '!' ]; then
    usermod -p '*' "$TEST_USER"
  fi
  if [ "$(getent passwd "$TEST_USER" | cut -d: -f6)" != "$TEST_HOME" ]; then
    usermod -d "$TEST_HOME" "$TEST_USER"
  fi
  if [ "$(getent passwd "$TEST_USER" | cut -d: -f7)" != /bin/bash ]; then
    usermod -s /bin/bash "$TEST_USER"
  fi
  mkdir -p "$TEST_HOME"
  chown "$TEST_USER:" "$TEST_HOME"
  chmod 755 "$TEST_HOME"
  flock -u 9
  exec 9>&-
}

start() {
  if ! [ -x /usr/sbin/sshd ]; then
    echo "sshd.sh: /usr/sbin/sshd missing; run tests/infra/install_system_deps.sh" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  # 0711 + 0644 authorized_keys: sshd reads AuthorizedKeysFile as the target user.
  chmod 711 "$DIR"
  ensure_user

  if alive "$DIR/sshd.pid"; then
    return 0
  fi

  [ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "cov-test-host" -f "$DIR/host_ed25519"
  [ -f "$DIR/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C "cov-test-client" -f "$DIR/client_key"
  chmod 600 "$DIR/host_ed25519" "$DIR/client_key"
  cp "$DIR/client_key.pub" "$DIR/authorized_keys"
  chmod 644 "$DIR/authorized_keys"

  # Privilege-separation dir; systemd's RuntimeDirectory would normally make it.
  mkdir -p /run/sshd && chmod 755 /run/sshd

  cat > "$DIR/sshd_config" <<EOF
ListenAddress $ADDR
Port $PORT
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# fast logins for a test harness
UseDNS no
GSSAPIAuthentication no
PrintMotd no
PrintLastLog no
LoginGraceTime 30
# many parallel connections / channels from one test process
MaxStartups 100:30:200
MaxSessions 100
MaxAuthTries 10
# keepalives: kernel TCP keepalive, plus ssh-level probes that drop dead clients
TCPKeepAlive yes
ClientAliveInterval 15
ClientAliveCountMax 4
X11Forwarding no
AllowTcpForwarding yes
PermitUserEnvironment no
Subsystem sftp internal-sftp
LogLevel INFO
EOF
  /usr/sbin/sshd -t -f "$DIR/sshd_config"

  # known_hosts and a client config, for OpenSSH clients.
  local alias=${SSHD_HOST_ALIAS:-} kh_name
  if [ "$PORT" = 22 ]; then kh_name=$ADDR; else kh_name="[$ADDR]:$PORT"; fi
  [ -n "$alias" ] && kh_name=$alias
  echo "$kh_name $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$DIR/known_hosts"
  {
    echo "Host ${alias:-covtest}"
    echo "  HostName $ADDR"
    echo "  Port $PORT"
    echo "  User $TEST_USER"
    echo "  IdentityFile $DIR/client_key"
    echo "  IdentitiesOnly yes"
    echo "  UserKnownHostsFile $DIR/known_hosts"
    echo "  StrictHostKeyChecking yes"
    [ -n "$alias" ] && echo "  HostKeyAlias $alias"
    [ -n "$NETNS" ] && echo "  ProxyCommand ip netns exec $NETNS nc $ADDR $PORT"
    echo "  BatchMode yes"
    echo "  ServerAliveInterval 15"
    echo "  LogLevel ERROR"
  } > "$DIR/ssh_config"

  local prefix=()
  [ -n "$NETNS" ] && prefix=(ip netns exec "$NETNS")
  : > "$DIR/sshd.log"
  # -D: foreground (we background it), -E: log file. `ip netns exec`, `unshare`
  # and `sh -c 'exec ...'` all exec without forking, so $! is sshd's PID.
  if [ -n "$HOSTNAME_NS" ]; then
    nohup "${prefix[@]}" unshare --uts sh -c 'hostname "$0" && exec /usr/sbin/sshd -D -f "$1" -E "$2"' \
      "$HOSTNAME_NS" "$DIR/sshd_config" "$DIR/sshd.log" </dev/null >/dev/null 2>&1 &
  else
    nohup "${prefix[@]}" /usr/sbin/sshd -D -f "$DIR/sshd_config" -E "$DIR/sshd.log" \
      </dev/null >/dev/null 2>&1 &
  fi
  local pid=$!
  echo "$pid" > "$DIR/sshd.pid"   # sshd -D writes the same PID into PidFile too

  for _ in $(seq 1 200); do
    if grep -q "Server listening on" "$DIR/sshd.log" 2>/dev/null; then
      return 0
    fi
    if ! running "$pid"; then break; fi
    sleep 0.025
  done
  echo "sshd.sh: sshd did not come up on $ADDR:$PORT${NETNS:+ (netns $NETNS)}; log:" >&2
  cat "$DIR/sshd.log" >&2 || true
  stop
  exit 1
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
