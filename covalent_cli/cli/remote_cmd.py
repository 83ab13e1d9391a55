"""``cov pull HOST RUN``: a run of another machine, copied here to be looked at offline."""
from __future__ import annotations

from typing import Optional

import click

from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.remote_on import remote_cov
from covalent_cli.errors import CovError
from runner.state import TERMINAL


@cli.command("pull")
@click.argument("host")
@click.argument("run_id")
@click.option("--remote-home", metavar="DIR", help="The host's runs home (default: the one "
              "its cov is configured with).")
@pass_ctx
def pull(ctx: Context, host: str, run_id: str, remote_home: Optional[str]) -> None:
    """Copy the ended run RUN_ID of HOST into this runs home (only files that changed since
    the last pull); then every command and the UI work on it here, offline."""
    import json

    from runner.remote_run import pull as pull_run
    from runner.ssh import SSHError

    remote = remote_cov(host)
    try:
        home = remote_home or remote.probe()
        found = remote.host.run(remote.cov_line(["--home", home, "status", run_id, "--json"]),
                                retry=True)
        if not found.ok:
            raise CovError(found.error_text.splitlines()[-1].removeprefix("Error: ")
                           if found.error_text else f"no run {run_id} on {host}")
        doc = json.loads(found.text)
        dispatch_id = str(doc["dispatch_id"])
        if doc.get("status") not in TERMINAL:
            # A runner here would take an unfinished copy for a run to serve and run its
            # tasks on this machine: only ended runs come back.
            raise CovError(f"run {dispatch_id} is {doc.get('status')} on {host}; pull it once "
                           f"it ended", f"cov wait --on {host} {dispatch_id[:8]}")
        path, copied = pull_run(remote, home, dispatch_id, ctx.home)
    except SSHError as exc:
        raise CovError(str(exc)) from None
    finally:
        remote.host.close()
    click.echo(f"Pulled {dispatch_id} from {host} ({copied} file(s) copied) to {path}")
