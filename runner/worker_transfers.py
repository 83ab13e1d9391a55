"""A task's file transfers, carried out where it runs (covalent_cli.fs; docs/executors.md
"File transfers"): shutil copies with rsync's trailing-slash rule, and rsync over ssh.

Stdlib only: shipped beside ``runner/worker.py`` (``worker.shipped_files``).
"""
from __future__ import annotations

import errno
import os
import subprocess
from typing import Any, Dict, List, Tuple

if __package__:  # runner.worker_transfers, in the package
    from runner.worker_common import HOST, TaskFailed
else:  # beside worker.py on a host without cov
    from worker_common import HOST, TaskFailed  # type: ignore[no-redef,import-not-found]


def file_transfers(transfers: Any, order: str, backend_transfers: bool) -> List[Tuple[str, str]]:
    """Carry out the transfers of ``order`` ("before"/"after"); return every transfer's
    (from, to) paths, the task's ``files`` argument. A failure raises ``TaskFailed`` naming
    the paths and the reason."""
    for t in transfers:
        kind = t["strategy"]["kind"]
        try:
            if order == "before":  # a File() without a path: an empty temporary file (Covalent's)
                for path in t.get("touch", ()):
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                    open(path, "a").close()
            if t.get("order", "before") != order or (kind == "executor" and backend_transfers):
                continue  # not now, or the backend copies it over its connection
            if kind == "rsync":
                _rsync(t)
            else:  # shutil, and the executor's connection when the task runs beside cov
                copy_path(t["from"], t["to"])
        except TaskFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a copy is the transfer's
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = getattr(exc, "filename", None)
            where = f" ({where})" if where and where not in (t["from"], t["to"]) else ""
            raise TaskFailed(transfer_error(t, f"{reason}{where}"), "file_transfer") from None
    return [(t["from"], t["to"]) for t in transfers]


def transfer_error(transfer: Dict[str, Any], reason: str) -> str:
    """The message of a failed transfer: which copy, when, where, why."""
    return (f"file transfer {transfer['from']} -> {transfer['to']} ({transfer.get('order')} the "
            f"task, {transfer['strategy']['kind']}) failed on {HOST}: {reason}")


def copy_path(src: str, dst: str) -> None:
    """Copy a file or folder with rsync's meaning of a trailing ``/``: ``dir/`` copies the
    folder's contents, ``dir`` the folder itself into ``dst/`` (or as ``dst``)."""
    import shutil

    src_dir = os.path.isdir(src)
    if not os.path.exists(src):
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", src)
    if dst.endswith("/") or (os.path.isdir(dst) and not src.endswith("/")):
        if not (src_dir and src.endswith("/")):
            dst = os.path.join(dst, os.path.basename(src.rstrip("/")))
    if src_dir:
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)


def _rsync(transfer: Dict[str, Any]) -> None:
    """``rsync -a`` here, over ssh when one side is remote (BatchMode: never a prompt)."""
    import shlex

    strategy = transfer["strategy"]
    src, dst = transfer["from"], transfer["to"]
    argv = ["rsync", "-a"]
    if transfer["direction"] != "cp":
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if strategy.get("ssh_config"):
            ssh += ["-F", strategy["ssh_config"]]
        if strategy.get("key"):
            ssh += ["-i", strategy["key"]]
        if strategy.get("port"):
            ssh += ["-p", str(strategy["port"])]
        argv += ["-e", " ".join(shlex.quote(a) for a in ssh)]
        host = f"{strategy['user']}@{strategy['host']}" if strategy.get("user") \
            else strategy["host"]
        if transfer["direction"] == "download":
            src = f"{host}:{src}"
        else:
            dst = f"{host}:{dst}"
    if transfer["direction"] != "upload":  # a local destination's folder, as copy_path does
        os.makedirs(os.path.dirname(dst.rstrip("/")) or ".", exist_ok=True)
    try:
        proc = subprocess.run(argv + [src, dst], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise TaskFailed(transfer_error(transfer, "rsync is not installed here"),
                         "file_transfer") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()[-1500:]
        raise TaskFailed(transfer_error(transfer, f"rsync exited with code {proc.returncode}: "
                                                  f"{detail}"), "file_transfer")

