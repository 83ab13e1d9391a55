"""A private sshd on 127.0.0.1 for the benchmarks that go through SSH (``tests/infra/sshd.sh``:
user covtest, whose shell startup is clean). Needs root and openssh-server."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Tuple

SSHD_SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "infra" / "sshd.sh"


def start_sshd(work: Path) -> Tuple[Path, int]:
    """Start one on a free loopback port: its directory (``ssh_config``, ``client_key``,
    ``known_hosts`` inside) and the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sshd = work / "sshd"
    subprocess.run(["bash", str(SSHD_SCRIPT), "start", str(sshd), str(port)], check=True,
                   stdout=subprocess.DEVNULL)
    return sshd, port


def stop_sshd(sshd: Path) -> None:
    subprocess.run(["bash", str(SSHD_SCRIPT), "stop", str(sshd)], check=False,
                   stdout=subprocess.DEVNULL)
