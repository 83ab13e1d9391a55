"""Where and how to connect to an SSH host (``HostSpec``), and the errors of ``runner.ssh``.

``HostSpec`` is the target as the user wrote it (an ``~/.ssh/config`` alias, a hostname, or
``user@host:port``) plus an executor's overrides; ``ssh_config`` fills in the rest when the
connection opens (``runner.ssh.hostkeys``, ``runner.ssh.connection``). Frozen and hashable:
``pool().host(spec)`` keeps one connection per distinct spec.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 15.0
DEFAULT_MAX_SESSIONS = 10


# -- errors ---------------------------------------------------------------------------------------
class SSHError(Exception):
    """Base of the SSH errors; ``host`` is the target as the user wrote it."""

    def __init__(self, message: str, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class ConnectFailed(SSHError):
    """The host could not be reached (after the configured retries). ``final``: retrying
    cannot help (a name that does not resolve, a missing config file)."""

    def __init__(self, message: str, host: str = "", final: bool = False) -> None:
        super().__init__(message, host)
        self.final = final


class AuthFailed(SSHError):
    """The server refused our credentials. Not retried."""


class HostKeyError(SSHError):
    """The server's host key is unknown or differs from known_hosts. Not retried."""


class ConnectionLost(SSHError):
    """The connection dropped (or went silent) while a command was running."""


class RemoteCommandFailed(SSHError):
    """``run(..., check=True)``: the command exited non-zero."""

    def __init__(self, message: str, host: str, exit_code: int, stderr: str) -> None:
        super().__init__(message, host)
        self.exit_code = exit_code
        self.stderr = stderr


# -- what to connect to ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HostSpec:
    """Where and how to connect. Everything but ``host`` is optional (ssh_config fills in)."""

    host: str
    user: Optional[str] = None
    port: Optional[int] = None
    key_file: Optional[str] = None
    ssh_config: Optional[str] = None  # a file, like ``ssh -F``; "none" for no file
    known_hosts: Optional[str] = None  # file(s), space-separated; replaces ssh_config's
    strict_host_key_checking: Optional[str] = None  # "yes"/"ask" (reject), "accept-new", "no"
    connect_timeout: Optional[float] = None
    keepalive: Optional[float] = None
    max_sessions: int = DEFAULT_MAX_SESSIONS
    retry_connect: bool = True
    max_connection_attempts: int = 5
    retry_wait_time: float = 5.0
    # secrets: in memory only (resolved from the run's 0600 secrets file), never shown
    password: Optional[str] = field(default=None, repr=False)
    passphrase: Optional[str] = field(default=None, repr=False)  # of an encrypted key_file

    @classmethod
    def parse(cls, target: str, **overrides: Any) -> "HostSpec":
        """``alias``, ``host``, ``user@host``, ``host:port``, ``user@[v6addr]:port``."""
        user, _, rest = target.rpartition("@")
        port: Optional[int] = None
        if rest.startswith("["):
            addr, _, tail = rest[1:].partition("]")
            rest = addr
            if tail.startswith(":") and tail[1:].isdigit():
                port = int(tail[1:])
        elif rest.count(":") == 1:
            name, _, maybe = rest.partition(":")
            if maybe.isdigit():
                rest, port = name, int(maybe)
        if not rest:
            raise ValueError(f"no host in {target!r}")
        fields: Dict[str, Any] = {"host": rest, "user": user or None, "port": port}
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    @classmethod
    def from_executor(cls, config: Dict[str, Any]) -> "HostSpec":
        """From SSHExecutor parameters (``hostname``, ``username``, ``port``, ``ssh_key_file``,
        ``ssh_config``, ``known_hosts``, ``strict_host_key_checking``, ``connect_timeout``,
        ``keepalive``, ``max_sessions``, ``retry_connect``, ``max_connection_attempts``,
        ``retry_wait_time``)."""
        hostname = config.get("hostname") or config.get("address")
        if not hostname:
            raise ValueError("the SSH executor has no hostname: set hostname=... (an "
                             "~/.ssh/config alias, a host name, or user@host:port)")

        def num(key: str, kind: Any) -> Any:
            value = config.get(key)
            return None if value in (None, "") else kind(value)

        return cls.parse(
            str(hostname), user=config.get("username") or None, port=num("port", int),
            key_file=config.get("ssh_key_file") or None, ssh_config=config.get("ssh_config"),
            known_hosts=config.get("known_hosts"),
            strict_host_key_checking=config.get("strict_host_key_checking"),
            connect_timeout=num("connect_timeout", float), keepalive=num("keepalive", float),
            max_sessions=num("max_sessions", int),
            retry_connect=None if config.get("retry_connect") is None else
            bool(config["retry_connect"]),
            max_connection_attempts=num("max_connection_attempts", int),
            retry_wait_time=num("retry_wait_time", float),
            password=config.get("password") or None,
            passphrase=config.get("passphrase") or config.get("ssh_key_passphrase") or None)

    def label(self) -> str:
        """The target as written: ``user@host:port`` with the parts that were given."""
        text = f"{self.user}@{self.host}" if self.user else self.host
        return f"{text}:{self.port}" if self.port else text


@dataclass
class RemoteResult:
    """What a remote command gave back."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace").strip()

    @property
    def error_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


__all__ = ["AuthFailed", "ConnectFailed", "ConnectionLost", "DEFAULT_CONNECT_TIMEOUT",
           "DEFAULT_KEEPALIVE", "DEFAULT_MAX_SESSIONS", "HostKeyError", "HostSpec",
           "RemoteCommandFailed", "RemoteResult", "SSHError"]
