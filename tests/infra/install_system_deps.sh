#!/usr/bin/env bash
# Install the Debian packages that the real-component tests need (Debian 12, as root).
#
#   bash tests/infra/install_system_deps.sh
#
# Idempotent and non-interactive. If every binary we need is already present it
# does not touch apt at all (a re-run takes a few ms). Otherwise it runs
# `apt-get update -qq` once and installs the packages below.
#
# Never runs `playwright install` (that downloads a browser, which cannot work on
# these machines): the tests drive Debian's /usr/bin/chromium through Playwright's
# executable_path instead.
set -euo pipefail
# root's tools (sshd, useradd, ip, slurmctld, munged) live in sbin; PATH may lack it
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  openssh-server openssh-client rsync
  iproute2 netcat-openbsd
  slurm-wlm munge
  chromium chromium-driver
)

# One binary (absolute path or command name) per thing the tests use.
BINARIES=(
  /usr/sbin/sshd ssh ssh-keygen rsync
  ip nc unshare useradd usermod
  slurmctld slurmd sinfo sbatch squeue scontrol scancel munged munge unmunge
  /usr/bin/chromium chromedriver
)

missing=()
for b in "${BINARIES[@]}"; do
  if [[ $b == /* ]]; then [ -x "$b" ] || missing+=("$b")
  else command -v "$b" >/dev/null 2>&1 || missing+=("$b"); fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_system_deps: all binaries present, skipping apt"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install_system_deps: missing ${missing[*]} and not root; cannot apt-get install" >&2
  exit 1
fi

echo "install_system_deps: missing ${missing[*]}; installing ${PACKAGES[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${PACKAGES[@]}" >/dev/null </dev/null

# Verify.
still=()
for b in "${BINARIES[@]}"; do
  if [[ $b == /* ]]; then [ -x "$b" ] || still+=("$b")
  else command -v "$b" >/dev/null 2>&1 || still+=("$b"); fi
done
if [ ${#still[@]} -ne 0 ]; then
  echo "install_system_deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "install_system_deps: done"
