"""ssh_config and host keys, read as OpenSSH reads them, for ``runner.ssh.connection``.

What is honoured, as OpenSSH does:

- the config file: ``HostSpec.ssh_config``, else ``$COV_SSH_CONFIG``, else ``~/.ssh/config``
  then ``/etc/ssh/ssh_config`` (``"none"``: no file). Host aliases, ``HostName``, ``User``,
  ``Port``, ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump`` (also ``none``),
  ``ProxyCommand``, ``ConnectTimeout``, ``ServerAliveInterval``, ``UserKnownHostsFile``,
  ``GlobalKnownHostsFile``, ``HostKeyAlias``, ``StrictHostKeyChecking``.
  Explicit ``user``/``port``/``key_file`` win over the file. An explicit ``key_file`` is used
  alone (no agent, no ``~/.ssh/id_*``), like ``IdentitiesOnly yes``.
- host keys: Fabric's default is to accept any unknown key (``AutoAddPolicy``); cov does not.
  Keys are checked against the known_hosts files (``HostKeyAlias`` or ``host`` /
  ``[host]:port``). A key that differs from the recorded one always fails (no setting turns
  that off). An unknown key fails too, because ``ssh``'s default ``StrictHostKeyChecking=ask``
  cannot prompt in a background runner, unless ``StrictHostKeyChecking accept-new`` (or
  ``no``) is set for that host in ssh_config or as the executor's
  ``strict_host_key_checking``: then the key is appended to the user's known_hosts file and a
  warning is logged. This applies to every ``ProxyJump`` hop too.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
from typing import Any, Dict, List, Tuple

import paramiko
from paramiko.ssh_exception import SSHException

from runner.ssh.hostspec import ConnectFailed, HostKeyError, HostSpec

log = logging.getLogger("cov.ssh")


# -- ssh_config -----------------------------------------------------------------------------------
def config_files(spec: HostSpec) -> List[str]:
    """The ssh_config files read for ``spec``, in OpenSSH's order (first value wins)."""
    chosen = spec.ssh_config or os.environ.get("COV_SSH_CONFIG")
    if chosen:
        return [] if chosen.lower() == "none" else [os.path.expanduser(chosen)]
    return [os.path.expanduser("~/.ssh/config"), "/etc/ssh/ssh_config"]


def load_ssh_config(spec: HostSpec) -> paramiko.SSHConfig:
    """The parsed ssh_config for ``spec`` (a missing default file is skipped)."""
    config = paramiko.SSHConfig()
    for path in config_files(spec):
        try:
            with open(path, encoding="utf-8") as f:
                config.parse(f)
        except FileNotFoundError:
            if spec.ssh_config:
                raise ConnectFailed(f"ssh_config file {path} does not exist", spec.label(),
                                    final=True) from None
        except OSError as exc:
            raise ConnectFailed(f"cannot read ssh_config file {path}: {exc.strerror}",
                                spec.label(), final=True) from None
    return config


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a key with no entry (recorded keys are checked by paramiko
    itself, which raises BadHostKeyException on a change)."""

    def __init__(self, name: str, mode: str, files: List[str], label: str) -> None:
        self.name, self.mode, self.files, self.label = name, mode, files, label

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        what = f"{key.get_name()} key {fingerprint(key)}"
        if self.mode in ("accept-new", "no", "off") and self.files:
            path = self.files[0]
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{self.name} {key.get_name()} {key.get_base64()}\n")
            log.warning("ssh: permanently added %s (%s) to %s (StrictHostKeyChecking=%s)",
                        self.name, what, path, self.mode)
            return
        files = ", ".join(self.files) or "no known_hosts file"
        raise HostKeyError(
            f"host key of {self.name} is unknown ({what}; looked in {files}). cov cannot ask "
            f"for confirmation: check the fingerprint, then run `ssh {self.label}` once and "
            f"answer yes, or add the key with `ssh-keyscan` to known_hosts, or set "
            f"StrictHostKeyChecking accept-new for this host in ssh_config (or the "
            f"executor's strict_host_key_checking='accept-new')", self.label)


def _known_hosts_files(spec: HostSpec, lookup: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(user files, global files)."""
    if spec.known_hosts:
        return [os.path.expanduser(p) for p in spec.known_hosts.split()], []
    user = (lookup.get("userknownhostsfile") or "~/.ssh/known_hosts ~/.ssh/known_hosts2").split()
    glob = (lookup.get("globalknownhostsfile") or
            "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2").split()
    return [os.path.expanduser(p) for p in user], [os.path.expanduser(p) for p in glob]


def secure(conn: Any, spec: HostSpec, target: bool) -> None:
    """Replace Fabric's accept-anything policy on ``conn`` (and, recursively, its gateways)."""
    lookup = conn.ssh_config
    hop = conn.gateway
    if isinstance(hop, type(conn)) and str(hop.original_host).lower() == "none":
        conn.gateway = lookup.get("proxycommand") or False  # "ProxyJump none" on a jump host
    user_files, global_files = _known_hosts_files(spec, lookup)
    name = lookup.get("hostkeyalias") or (conn.host if int(conn.port) == 22
                                          else f"[{conn.host}]:{conn.port}")
    paramiko_name = conn.host if int(conn.port) == 22 else f"[{conn.host}]:{conn.port}"
    known = conn.client.get_host_keys()
    for path in user_files + global_files:
        try:
            entries = paramiko.HostKeys(path).lookup(name)
        except (OSError, SSHException, ValueError):
            continue
        for keytype in entries.keys() if entries else ():
            if known.lookup(paramiko_name) is None or keytype not in known.lookup(paramiko_name):
                known.add(paramiko_name, keytype, entries[keytype])
    mode = ((spec.strict_host_key_checking if target else None) or
            lookup.get("stricthostkeychecking") or "ask").lower()
    label = spec.label() if target else str(conn.original_host)
    conn.client.set_missing_host_key_policy(_KnownHostsPolicy(name, mode, user_files, label))
    conn.client.cov_known = (name, user_files + global_files)  # for the changed-key message
    if isinstance(conn.gateway, type(conn)):
        secure(conn.gateway, spec, target=False)


__all__ = ["config_files", "fingerprint", "load_ssh_config", "secure"]
