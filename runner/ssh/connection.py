"""One reused SSH connection per host, opened the way the user's own ``ssh`` would open it.

A ``HostSpec`` says where to go (an ``~/.ssh/config`` alias, a hostname, or ``user@host:port``)
plus the executor's overrides. ``pool().host(spec)`` gives the process's single ``SSHHost`` for
that spec; it opens a Fabric ``Connection`` on first use and shares it between threads.

See ``runner.ssh.hostkeys`` for what of ssh_config is honoured and how host keys are
checked (never Fabric's accept-anything default).

Connections get TCP_NODELAY (Nagle adds ~40 ms to each command), a keepalive every
``keepalive`` seconds, and a connect timeout. Opening is lock-guarded (Fabric's ``open`` is not
thread-safe); channels on an open connection are opened concurrently, at most
``max_sessions`` at a time (sshd's ``MaxSessions`` defaults to 10).

Failures: an authentication failure, an unknown or changed host key, or a hostname that does
not resolve fail at once (``AuthFailed``, ``HostKeyError``, ``ConnectFailed``). A refused,
timed-out or dropped connection is retried ``max_connection_attempts`` times (if
``retry_connect``), waiting ``retry_wait_time`` seconds, doubling each time (at most 60 s),
then ``ConnectFailed`` names the host and the cause. Threads that waited while another thread
failed get that failure instead of starting their own round of retries.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import paramiko
from paramiko.ssh_exception import (AuthenticationException, BadHostKeyException,
                                    ChannelException, PasswordRequiredException, SSHException)

from runner.ssh.hostkeys import config_files, fingerprint, load_ssh_config, secure
from runner.ssh.hostspec import (DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE,
                                 DEFAULT_MAX_SESSIONS, AuthFailed, ConnectFailed,
                                 ConnectionLost, HostKeyError, HostSpec, RemoteCommandFailed,
                                 RemoteResult, SSHError)

log = logging.getLogger("cov.ssh")

MAX_BACKOFF = 60.0


# -- one host -------------------------------------------------------------------------------------
class SSHHost:
    """One lazily opened connection to a host, shared by threads."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.label = spec.label()
        self.description = self.label  # refined once connected: user@hostname:port via ...
        self._lock = threading.Lock()
        self._conn: Any = None
        self._rounds = 0  # finished open attempts (success or failure)
        self._failure: Optional[Tuple[int, SSHError]] = None
        self._slots = threading.BoundedSemaphore(max(1, spec.max_sessions))
        self._closed = threading.Event()

    # -- opening ----------------------------------------------------------------------------------
    def connection(self) -> Any:
        """The open ``fabric.Connection`` (connecting, with retries, if needed)."""
        conn = self._conn
        if conn is not None and conn.is_connected:
            return conn
        seen = self._rounds
        with self._lock:
            conn = self._conn
            if conn is not None and conn.is_connected:
                return conn
            if self._failure is not None and self._failure[0] > seen:
                raise self._failure[1]  # another thread just failed: no second round
            if conn is not None:
                self._close_conn(conn)
                log.warning("ssh: connection to %s was lost; reconnecting", self.label)
            try:
                self._conn = self._open_with_retries()
                self._failure = None
            except SSHError as exc:
                self._failure = (self._rounds + 1, exc)
                raise
            finally:
                self._rounds += 1
            return self._conn

    @property
    def connected(self) -> bool:
        """True while the connection is open (no I/O)."""
        conn = self._conn
        return conn is not None and conn.is_connected

    def transport(self) -> paramiko.Transport:
        """The open paramiko transport."""
        return self.connection().client.get_transport()

    def _open_with_retries(self) -> Any:
        spec = self.spec
        attempts = max(1, spec.max_connection_attempts) if spec.retry_connect else 1
        wait = max(0.0, spec.retry_wait_time)
        for attempt in range(1, attempts + 1):
            if self._closed.is_set():
                raise ConnectFailed(f"connection to {self.label} abandoned: closing", self.label)
            try:
                return self._open_once()
            except (AuthFailed, HostKeyError):
                raise
            except ConnectFailed as exc:
                if exc.final or attempt == attempts:
                    if attempts > 1 and not exc.final:
                        raise ConnectFailed(f"cannot connect to {self.description} after "
                                            f"{attempts} attempts: {exc}", self.label) from None
                    raise ConnectFailed(f"cannot connect to {self.description}: {exc}",
                                        self.label) from None
                delay = min(wait * 2 ** (attempt - 1), max(wait, MAX_BACKOFF))
                log.warning("ssh: %s: %s; retry %d/%d in %.1f s", self.label, exc, attempt,
                            attempts - 1, delay)
                if self._closed.wait(delay):
                    raise ConnectFailed(f"connection to {self.label} abandoned: closing",
                                        self.label) from None
        raise AssertionError("unreachable")

    def _open_once(self) -> Any:
        import fabric

        spec = self.spec
        ssh_config = load_ssh_config(spec)
        lookup = ssh_config.lookup(spec.host)
        gateway: Any = None
        if str(lookup.get("proxyjump", "")).lower() == "none":  # fabric: a host named "none"
            gateway = lookup.get("proxycommand") or False
        connect_kwargs: Dict[str, Any] = {}
        if spec.key_file:
            path = os.path.expanduser(spec.key_file)
            if not os.path.isfile(path):
                raise AuthFailed(f"ssh_key_file {path} does not exist", self.label)
            connect_kwargs.update(key_filename=[path], look_for_keys=False, allow_agent=False)
        elif str(lookup.get("identitiesonly", "")).lower() == "yes":
            connect_kwargs.update(look_for_keys=False, allow_agent=False)
        if spec.password:
            connect_kwargs["password"] = spec.password
        if spec.passphrase:
            connect_kwargs["passphrase"] = spec.passphrase
        timeout = spec.connect_timeout or float(lookup.get("connecttimeout") or
                                                DEFAULT_CONNECT_TIMEOUT)
        connect_kwargs.update(banner_timeout=timeout, auth_timeout=timeout)
        conn = fabric.Connection(
            spec.host, user=spec.user, port=spec.port, gateway=gateway,
            config=fabric.Config(ssh_config=ssh_config, lazy=True),
            connect_timeout=max(1, int(timeout + 0.999)), connect_kwargs=connect_kwargs)
        # An explicit key is used alone (Fabric would add ssh_config's IdentityFile). OpenSSH
        # skips IdentityFile entries that do not exist; paramiko would raise IOError.
        keys = [os.path.expanduser(spec.key_file)] if spec.key_file else \
            conn.connect_kwargs.get("key_filename") or []
        conn.connect_kwargs["key_filename"] = [k for k in keys if os.path.isfile(
            os.path.expanduser(k))]
        via = ""
        if isinstance(conn.gateway, str):
            via = f" via ProxyCommand `{conn.gateway}`"
        elif conn.gateway:
            via = f" via ProxyJump {conn.gateway.original_host}"
        self.description = f"{conn.user}@{conn.host}:{conn.port}{via}"
        if spec.host not in (conn.host,):
            self.description = f"{spec.host} ({self.description})"
        secure(conn, spec, target=True)
        try:
            conn.open()
        except BaseException as exc:
            self._close_conn(conn)
            raise self._classify(exc, conn) from None
        transport = conn.client.get_transport()
        keepalive = spec.keepalive or float(lookup.get("serveraliveinterval") or DEFAULT_KEEPALIVE)
        transport.set_keepalive(max(1, int(keepalive)))
        hop = conn
        while hop:  # the first hop's socket is a real one (direct, or under ProxyJump)
            sock = hop.client.get_transport().sock
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hop = hop.gateway if isinstance(hop.gateway, type(conn)) else None
        return conn

    def _classify(self, exc: BaseException, conn: Any) -> SSHError:
        if isinstance(exc, SSHError):
            return exc
        if isinstance(exc, BadHostKeyException):
            name, files = getattr(conn.client, "cov_known", (conn.host, []))
            return HostKeyError(
                f"HOST KEY CHANGED for {name}: known_hosts has {exc.expected_key.get_name()} "
                f"{fingerprint(exc.expected_key)}, the server offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}. Refusing to connect (this can be "
                f"a man-in-the-middle attack). If the host was reinstalled, remove the old key "
                f"with `ssh-keygen -R '{name}'` (files: {', '.join(files)}) and connect once "
                f"with ssh to check and record the new one", self.label)
        if isinstance(exc, PasswordRequiredException):
            return AuthFailed(f"the key for {self.description} is encrypted: load it into "
                              f"ssh-agent (ssh-add) or give the executor its passphrase",
                              self.label)
        if isinstance(exc, AuthenticationException):
            keys = conn.connect_kwargs.get("key_filename") or []
            tried = ", ".join(keys) if keys else "ssh-agent and ~/.ssh/id_*"
            return AuthFailed(f"authentication failed for {self.description} (keys: {tried}): "
                              f"{exc}. Check ssh_key_file / IdentityFile and that the public key "
                              f"is in the remote ~/.ssh/authorized_keys", self.label)
        if isinstance(exc, socket.gaierror):
            return ConnectFailed(f"cannot resolve host name {conn.host}: {exc.strerror}",
                                 self.label, final=True)
        if isinstance(exc, (OSError, EOFError, SSHException)):
            return ConnectFailed(_cause(exc, conn), self.label)
        if isinstance(exc, Exception):
            return ConnectFailed(f"{type(exc).__name__}: {exc}", self.label)
        raise exc

    # -- using ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def channel(self, command: str, timeout: Optional[float] = None) -> Iterator[paramiko.Channel]:
        """An exec channel running ``command`` (closed on exit). Reads time out after
        ``timeout`` seconds; a dropped connection raises ``ConnectionLost``."""
        self._slots.acquire()
        try:
            transport = self.transport()
            try:
                chan = transport.open_session(timeout=self.spec.connect_timeout or
                                              DEFAULT_CONNECT_TIMEOUT)
            except ChannelException as exc:
                raise SSHError(f"{self.label} refused a new session ({exc}); the server's "
                               f"MaxSessions may be lower than max_sessions="
                               f"{self.spec.max_sessions}", self.label) from None
            except (SSHException, EOFError, OSError):
                self.invalidate(transport)  # it died while idle: reconnect once
                transport = self.transport()
                chan = transport.open_session(timeout=self.spec.connect_timeout or
                                              DEFAULT_CONNECT_TIMEOUT)
            try:
                chan.settimeout(timeout)
                chan.exec_command(command)
                yield chan
            except socket.timeout:
                raise ConnectionLost(f"no answer from {self.label} for {timeout:.0f} s",
                                     self.label) from None
            except (SSHException, EOFError, OSError) as exc:
                if not transport.is_active():
                    self.invalidate(transport)
                raise ConnectionLost(f"connection to {self.label} lost: {_cause(exc)}",
                                     self.label) from None
            finally:
                # Closing a channel of a dropped connection raises EOFError; what went wrong
                # was said above (ConnectionLost), not as a raw error from here.
                with contextlib.suppress(SSHException, EOFError, OSError):
                    chan.close()
        finally:
            self._slots.release()

    @contextlib.contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session on the connection (one of its ``max_sessions``), closed on exit."""
        self._slots.acquire()
        try:
            client = paramiko.SFTPClient.from_transport(self.transport())
            if client is None:
                raise SSHError(f"{self.label} refused an SFTP session", self.label)
            try:
                yield client
            finally:
                client.close()
        finally:
            self._slots.release()

    def run(self, command: str, input: Optional[bytes] = None, timeout: Optional[float] = 120.0,
            check: bool = False, retry: bool = False) -> RemoteResult:
        """Run ``command`` (a shell line) and collect its output. ``input`` goes to stdin.
        ``retry=True``: run it again once if the connection drops (idempotent commands only)."""
        for attempt in (1, 2):
            try:
                with self.channel(command, timeout) as chan:
                    if input:
                        send_all(chan, input)
                    chan.shutdown_write()
                    out, err = _drain(chan, timeout)
                    code = chan.recv_exit_status()
                    if code == -1:  # closed without an exit status: the connection died
                        raise EOFError("closed without an exit status")
                break
            except ConnectionLost:
                if not retry or attempt == 2:
                    raise
        result = RemoteResult(code, out, err)
        if check and not result.ok:
            first = shlex.split(command)[0] if command.strip() else command
            raise RemoteCommandFailed(
                f"`{first} ...` on {self.label} exited with {code}: {result.error_text[-500:]}",
                self.label, code, result.error_text)
        return result

    def put_bytes(self, data: bytes, path: str, mode: Optional[int] = None) -> None:
        """Write ``data`` to the remote ``path`` atomically (temporary name, then rename)."""
        q = shlex.quote
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        chmod = f" && chmod {mode:o} {q(tmp)}" if mode is not None else ""
        parent = os.path.dirname(path) or "."
        self.run(f"mkdir -p {q(parent)} && cat > {q(tmp)}{chmod} && mv -f {q(tmp)} {q(path)}",
                 input=data, check=True)

    def invalidate(self, transport: Optional[paramiko.Transport] = None) -> None:
        """Drop the connection (if it is still ``transport``); the next use reconnects."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            if transport is not None and conn.client.get_transport() is not transport:
                return
            self._conn = None
        self._close_conn(conn)

    def close(self) -> None:
        """Close the connection; retries in progress stop."""
        self._closed.set()
        self.invalidate()

    @staticmethod
    def _close_conn(conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
            pass
        gateway = getattr(conn, "gateway", None)
        if gateway and not isinstance(gateway, str):
            SSHHost._close_conn(gateway)


def send_all(chan: paramiko.Channel, data: bytes, chunk: int = 1 << 18) -> None:
    """``chan.sendall(data)`` in slices: paramiko's own loop copies the rest of ``data`` after
    every 32 kB packet, which makes a 50 MB upload take half a minute."""
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        chan.sendall(bytes(view[start:start + chunk]))


def _drain(chan: paramiko.Channel, timeout: Optional[float]) -> Tuple[bytes, bytes]:
    """Read stdout and stderr to EOF without letting either fill the window."""
    import select

    out: List[bytes] = []
    err: List[bytes] = []
    while True:
        got = False
        while chan.recv_ready():
            out.append(chan.recv(1 << 16))
            got = True
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(1 << 16))
            got = True
        if (chan.eof_received or chan.closed) and not chan.recv_ready() and \
                not chan.recv_stderr_ready():
            break
        if not got:
            ready, _, _ = select.select([chan], [], [], timeout)
            if not ready:
                raise socket.timeout()
    return b"".join(out), b"".join(err)


def _cause(exc: BaseException, conn: Any = None) -> str:
    """A short human cause for a connection-level exception."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.ProxyCommandFailure):
        return f"ProxyCommand failed: {exc}"
    if isinstance(exc, EOFError):
        return "the connection was closed by the remote end"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    if "protocol banner" in text and conn is not None and isinstance(conn.gateway, str):
        text += f" (ProxyCommand `{conn.gateway}` gave no SSH server)"
    return text


# -- the pool -------------------------------------------------------------------------------------
class SSHPool:
    """The process's connections: one ``SSHHost`` per distinct ``HostSpec``."""

    def __init__(self) -> None:
        self._hosts: Dict[HostSpec, SSHHost] = {}
        self._lock = threading.Lock()

    def host(self, spec: HostSpec) -> SSHHost:
        """The shared ``SSHHost`` for ``spec`` (not connected until first used)."""
        with self._lock:
            found = self._hosts.get(spec)
            if found is None or found._closed.is_set():
                found = self._hosts[spec] = SSHHost(spec)
            return found


_POOL: Optional[SSHPool] = None
_POOL_LOCK = threading.Lock()


def pool() -> SSHPool:
    """The process-wide ``SSHPool``."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SSHPool()
        return _POOL


__all__ = ["AuthFailed", "ConnectFailed", "ConnectionLost", "DEFAULT_CONNECT_TIMEOUT",
           "DEFAULT_KEEPALIVE", "DEFAULT_MAX_SESSIONS", "HostKeyError", "HostSpec",
           "RemoteCommandFailed", "RemoteResult", "SSHError", "SSHHost", "SSHPool", "pool",
           "config_files", "fingerprint", "load_ssh_config", "send_all"]
