"""``--on HOST``: the same commands, on another machine.

``cov dispatch --on HOST SCRIPT`` builds the run here (no runner starts here), ships it to the
host's runs home and starts a runner there (``runner.remote_run``). Any other command given
``--on HOST`` (``status``, ``logs``, ``wait``, ``result``, ``runs``, ``cancel``...) is the
host's own ``cov`` run with the same arguments over the pooled SSH connection; its stdout,
stderr and exit code are relayed, so ``--json`` and exit codes work as they do here. With
``--on``, ``--home`` names the host's runs home.

HOST is an ssh_config alias (ProxyJump honoured), ``user@host[:port]``, or the name of an SSH
executor of the config file, whose ``python_path`` / ``prelude`` say how to start the Python
that has cov there.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import click

from covalent_cli.errors import CovError, UserError

if TYPE_CHECKING:
    from runner.remote_run import RemoteCov

_GLOBAL_FLAGS = ("--debug",)
ON_HELP = ("Run this command on HOST (an ssh_config alias, user@host[:port], or an SSH "
           "executor's name) over SSH: its output and exit code come back here (docs/remote.md).")


DISPATCH_ON_HELP = ("Build the run here, ship it to HOST (an ssh_config alias, "
                    "user@host[:port], or an SSH executor's name) and run it there; cov ships "
                    "itself there if HOST has none (docs/remote.md).")


def on_option(fn: Any, help: str = ON_HELP) -> Any:
    """``--on HOST`` in a command's ``--help``. ``run_on`` takes the option off the command
    line before click sees it, so click never gets a value for it."""
    return click.option("--on", "on_host", metavar="HOST", expose_value=False, help=help)(fn)


def dispatch_on_option(fn: Any) -> Any:
    """``on_option`` with ``cov dispatch``'s own words."""
    return on_option(fn, DISPATCH_ON_HELP)
_GLOBAL_VALUED = ("--home",)


def split_on(argv: List[str]) -> Optional[Tuple[str, List[str]]]:
    """``(HOST, argv without --on HOST)`` if ``--on`` was given, else None. Arguments after
    ``--`` are the script's and never looked at."""
    head, sep, tail = _split_dashdash(argv)
    for i, word in enumerate(head):
        if word == "--on":
            if i + 1 >= len(head) or head[i + 1].startswith("-"):
                raise UserError("--on needs a host", "e.g. cov status --on login1 RUN")
            return head[i + 1], head[:i] + head[i + 2:] + sep + tail
        if word.startswith("--on="):
            return word[5:], head[:i] + head[i + 1:] + sep + tail
    return None


def _split_dashdash(argv: List[str]) -> Tuple[List[str], List[str], List[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], ["--"], argv[i + 1:]
    return argv, [], []


def _command_of(argv: List[str]) -> Tuple[List[str], str, List[str]]:
    """``(global options, command name, its arguments)``."""
    i = 0
    while i < len(argv):
        if argv[i] in _GLOBAL_VALUED:
            i += 2
        elif argv[i] in _GLOBAL_FLAGS or argv[i].startswith("--home="):
            i += 1
        else:
            return argv[:i], argv[i], argv[i + 1:]
    raise UserError("--on needs a command", "e.g. cov status --on HOST RUN")


def host_config(host: str) -> Dict[str, Any]:
    """HOST as a configured executor name (type ssh), else as an ssh target (as ``cov check``
    takes it)."""
    from runner.backends.ssh import effective_config
    from runner.config import get_value

    named = get_value(f"executors.{host}")
    if isinstance(named, dict) and named.get("type", "ssh") == "ssh" and host != "ssh":
        return effective_config(named)
    return effective_config({"hostname": host})


def remote_cov(host: str) -> "RemoteCov":
    """The host's cov on its pooled connection."""
    from runner.remote_run import RemoteCov
    from runner.ssh import HostSpec, PythonSetup, pool

    config = host_config(host)
    try:
        spec = HostSpec.from_executor(config)
    except ValueError as exc:
        raise CovError(str(exc)) from None
    from runner.ssh.remote import DEFAULT_CACHE

    return RemoteCov(pool().host(spec), PythonSetup.from_executor(config), host,
                     remote_cache=str(config.get("remote_cache") or DEFAULT_CACHE))


def run_on(argv: List[str]) -> Optional[int]:
    """Carry out a command line that has ``--on HOST``; its exit code (None: no ``--on``)."""
    found = split_on(argv)
    if found is None:
        return None
    host, rest = found
    if "-h" in rest or "--help" in rest:  # the local command's help, which is the same
        sys.argv[1:] = rest
        return None
    globals_, command, args = _command_of(rest)
    from runner.ssh import SSHError

    try:
        if command == "dispatch":
            return dispatch_on(host, globals_, args)
        if command in ("pull", "ui"):
            raise UserError(f"cov {command} does not take --on", f"cov pull HOST RUN, then "
                            f"cov {command} here" if command == "ui" else "cov pull HOST RUN")
        remote = remote_cov(host)
        remote.setup_there()  # cov there (shipped there if need be), the same Python
        return relay(remote, [*globals_, command, *args])
    except SSHError as exc:
        raise CovError(str(exc)) from None


def relay(remote: "RemoteCov", args: List[str]) -> int:
    """Run the host's ``cov ARGS``; its output goes to ours as it comes; its exit code."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    with remote.host.channel(remote.cov_line(args)) as chan:
        chan.shutdown_write()
        while True:
            got = False
            while chan.recv_ready():
                out.write(chan.recv(1 << 16))
                got = True
            while chan.recv_stderr_ready():
                err.write(chan.recv_stderr(1 << 16))
                got = True
            if got:
                out.flush()
                err.flush()
            if chan.exit_status_ready() and not chan.recv_ready() and \
                    not chan.recv_stderr_ready():
                break
            if not got:
                select.select([chan], [], [], 1.0)
        code = chan.recv_exit_status()
    if code < 0:
        raise CovError(f"the connection to {remote.name} dropped; the run goes on there: "
                       f"look again with --on {remote.name}")
    return int(code)


def dispatch_on(host: str, globals_: List[str], args: List[str]) -> int:
    """``cov dispatch --on HOST ...``: build here, ship, start there."""
    from runner.remote_run import ship

    wait_ = any(a == "--wait" for a in args)
    as_json = any(a == "--json" for a in args)
    quiet = any(a in ("-q", "--quiet") for a in args)
    if "--dry-run" in args:  # writes nothing: nothing to ship
        return subprocess.call([sys.executable, "-m", "covalent_cli.cli", "dispatch", *args])
    remote = remote_cov(host)
    there = remote.setup_there(for_dispatch=True)  # cov there, the same Python, its config
    remote_home = _remote_home(globals_) or there.home
    build = [a for a in args if a not in ("--wait", "--json", "-q", "--quiet")]
    staging = Path(tempfile.mkdtemp(prefix="cov-dispatch-on-"))
    try:
        # Built with the host's config: executor names (Slurm partitions, SSH hosts...) are
        # the host's. The copy is the user's alone (it may hold secrets) and goes with staging.
        config = staging / ".host-config.yaml"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(there.config)
        from covalent_cli.dispatch import BUILD_FOR_HOST

        env = {**os.environ, "COV_HOME": str(staging), "COV_NO_RUNNER": "1",
               "COV_CONFIG": str(config), BUILD_FOR_HOST: "1"}
        done = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "dispatch", *build,
                               "--json"], env=env, stdout=subprocess.PIPE)
        if done.returncode != 0:
            return done.returncode
        from runner.remote_run import dispatched_ids

        ids, printed = dispatched_ids(done.stdout.decode("utf-8", "replace"))
        if printed:  # the script's own prints; stdout stays one document with --json
            click.echo(printed, err=as_json)
        for dispatch_id in ids:
            ship(remote, staging / dispatch_id, remote_home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    remote.start_runner(remote_home)
    if as_json and not wait_:
        from runner.json_view import dumps

        click.echo(dumps({"dispatch_ids": ids, "host": host, "home": remote_home}))
    elif not as_json:
        for dispatch_id in ids:
            click.echo(dispatch_id if quiet else f"Dispatched {dispatch_id} on {host}")
        if not quiet and ids:
            short = ids[0][:8]
            click.echo(f"  run directory  {host}:{remote_home}/{ids[0]}", err=True)
            click.echo(f"  look at it     cov status --on {host} {short}   "
                       f"cov pull {host} {short}", err=True)
    if not wait_:
        return 0
    home_opt = ["--home", remote_home]
    worst = 0
    docs = []
    for dispatch_id in ids:
        relay(remote, [*home_opt, "wait", "-q", dispatch_id])
        if as_json:  # one document for all, as a local ``dispatch --wait --json`` prints
            got = remote.host.run(remote.cov_line([*home_opt, "result", dispatch_id, "--json"]),
                                  timeout=None, retry=True)
            sys.stderr.write(got.stderr.decode("utf-8", "replace"))
            docs.append(json.loads(got.text))
            code = got.exit_code
        else:
            code = relay(remote, [*home_opt, "result", dispatch_id])
        worst = max(worst, code)
    if as_json:
        from runner.json_view import dumps

        click.echo(dumps({"dispatch_ids": ids, "host": host, "home": remote_home,
                          "runs": docs}))
    return worst


def _remote_home(globals_: List[str]) -> Optional[str]:
    for i, word in enumerate(globals_):
        if word == "--home" and i + 1 < len(globals_):
            return globals_[i + 1]
        if word.startswith("--home="):
            return word[7:]
    return None


def run_on_or_none(argv: List[str]) -> Optional[int]:
    """``run_on``, with cov's errors shown as one ``Error:`` line (``--debug``: traceback)."""
    try:
        return run_on(argv)
    except CovError as exc:
        if "--debug" in argv:
            raise
        click.echo(f"Error: {exc.line()}", err=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
