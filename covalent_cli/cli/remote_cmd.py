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
    """Copy the run RUN_ID of HOST into this runs home (only what changed since the last
    pull); then every command and the UI work on it here, offline. An unfinished run comes
    as a snapshot that no runner here serves (the host's runner owns it): pull again for
    more."""
    import json

    from runner.remote_pull import pull as pull_run
    from runner.ssh import SSHError

    remote = remote_cov(host)
    try:
        home = remote_home or remote.probe()
        if remote_home:
            remote.probe()  # cov there (shipped, if the host has none)
        found = remote.host.run(remote.cov_line(["--home", home, "status", run_id, "--json"]),
                                retry=True)
        if not found.ok:
            raise CovError(found.error_text.splitlines()[-1].removeprefix("Error: ")
                           if found.error_text else f"no run {run_id} on {host}")
        doc = json.loads(found.text)
        dispatch_id = str(doc["dispatch_id"])
        status = str(doc.get("status") or "")
        path, copied = pull_run(remote, home, dispatch_id, ctx.home, status)
    except SSHError as exc:
        raise CovError(str(exc)) from None
    finally:
        remote.host.close()
    click.echo(f"Pulled {dispatch_id} from {host} ({copied} file(s) copied) to {path}")
    if status not in TERMINAL:
        click.echo(f"  a snapshot: the run is {status} on {host} and goes on there; pull again "
                   f"for more (cov pull {host} {dispatch_id[:8]})", err=True)
