"""``cov check HOST``: can tasks run on this SSH host? Connects, reports the remote Python and
cloudpickle against the local ones, and says what to do about a mismatch. Writes nothing there."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import click

from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import CovError
from runner.json_view import dumps


def _executor_config(host: str) -> Dict[str, Any]:
    """HOST as a configured executor name (type ssh), else as an ssh target."""
    from runner.backends.ssh import effective_config
    from runner.config import get_value

    named = get_value(f"executors.{host}")
    if isinstance(named, dict) and named.get("type", "ssh") == "ssh" and host != "ssh":
        return effective_config(named)
    return effective_config({"hostname": host})


@cli.command("check")
@click.argument("host")
@click.option("--python", "python_path", metavar="CMD", help="Remote Python (default: the "
              "executor's python_path, else python3).")
@click.option("--ssh-config", metavar="FILE", help="ssh_config file (default: $COV_SSH_CONFIG, "
              "else ~/.ssh/config).")
@click.option("--attempts", type=int, default=None, help="Connection attempts (default: the "
              "executor's max_connection_attempts).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def check(ctx: Context, host: str, python_path: Optional[str], ssh_config: Optional[str],
          attempts: Optional[int], as_json: bool) -> None:
    """Check an SSH host: HOST is an ~/.ssh/config alias, user@host[:port], or the name of an
    executor in the config file. Exit 0 if tasks can run there, else 1."""
    from runner.ssh import HostSpec, PythonSetup, SSHError, compare_versions, pool, probe

    config = _executor_config(host)
    if python_path:
        config["python_path"] = python_path
    if ssh_config:
        config["ssh_config"] = ssh_config
    if attempts is not None:
        config["max_connection_attempts"] = attempts
    try:
        spec = HostSpec.from_executor(config)
    except ValueError as exc:
        raise CovError(str(exc)) from None
    setup = PythonSetup.from_executor(config)
    connection = pool().host(spec)
    started = time.time()
    try:
        connection.connection()
        connected = time.time() - started
        report, _ = probe(connection, setup)
    except SSHError as exc:
        raise CovError(f"{exc}") from None
    finally:
        connection.close()
    ship = config.get("ship_cloudpickle", True) is not False
    rows = compare_versions(report, ship_cloudpickle=ship)
    usable = all(level != "error" for _, level, _ in rows)
    if as_json:
        click.echo(dumps({"host": host, "target": connection.description,
                          "remote_hostname": report.hostname, "home": report.home,
                          "connect_seconds": round(connected, 3), "usable": usable,
                          "checks": [{"what": w, "level": lv, "message": m}
                                     for w, lv, m in rows]}))
    else:
        click.echo(f"{'host':<12} {report.hostname} ({connection.description})")
        click.echo(f"{'connect':<12} ok in {connected:.2f} s; remote home {report.home}")
        for what, level, message in rows:
            click.echo(f"{what:<12} {level.upper() if level != 'ok' else 'ok'}: {message}")
    if not usable:
        raise CovError(f"tasks cannot run on {host} as configured; see above")
