"""Run one task in Covalent's order: deps (bash, pip), file transfers, call_before hooks, the
function (or its executor's ``run``), transfers after, call_after hooks; then its outcome's
header and pickled value. Every failure becomes a header, never an exception.

Imports only the stdlib, cloudpickle and the shipped modules beside it (``worker.shipped_files``).
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Tuple

import cloudpickle

if __package__:  # runner.worker_task, in the package
    from runner.outcome import OutcomeHeader, value_preview
    from runner.worker_common import HOST, ChildRun, TaskFailed, write_fd
    from runner.worker_transfers import file_transfers
else:  # beside worker.py on a host without cov
    from outcome import OutcomeHeader, value_preview  # type: ignore[no-redef,import-not-found]
    from worker_common import (HOST, ChildRun, TaskFailed,  # type: ignore[no-redef,import-not-found]
                               write_fd)
    from worker_transfers import file_transfers  # type: ignore[no-redef,import-not-found]


def _call_hook(call: Dict[str, Any], stdout_fd: int, stderr_fd: int) -> Any:
    """One call_before/call_after entry: a call, or a DepsBash/DepsPip given there (Covalent
    runs those in the list's order too)."""
    if "fn" not in call:
        for command in call.get("bash", ()):
            _run_shell(command, stdout_fd, stderr_fd)
        if call.get("pip"):
            _pip_install(call["pip"], stdout_fd, stderr_fd)
        return None
    return call["fn"](*call.get("args", ()), **call.get("kwargs", {}))


def run_task(electron: Dict[str, Any], args: List[Any], kwargs: Dict[str, Any],
             stdout_fd: int, stderr_fd: int, backend_transfers: bool = False
             ) -> Tuple[OutcomeHeader, bytes]:
    """Run deps, hooks and the function in Covalent's order; return (header, payload).
    ``backend_transfers``: the backend does the ExecutorConnection file transfers itself."""
    start = time.time()
    header: OutcomeHeader = {"ok": False, "start": start, "host": HOST, "pid": os.getpid()}
    payload = b""
    try:
        hooks = electron.get("hooks") or {}
        for command in hooks.get("bash", ()):
            _run_shell(command, stdout_fd, stderr_fd)
        pip = hooks.get("pip")
        if pip and (pip.get("packages") or pip.get("requirements")):
            _pip_install(pip, stdout_fd, stderr_fd)
        transfers = hooks.get("files") or ()
        if transfers:  # Covalent's order: before the call_before hooks, after the deps
            paths = file_transfers(transfers, "before", backend_transfers)
            if hooks.get("files_arg", True):  # a lepton's are not passed (Covalent's way)
                kwargs["files"] = paths
        injected: Dict[str, List[Any]] = {}
        for call in hooks.get("call_before", ()):
            value = _call_hook(call, stdout_fd, stderr_fd)
            if call.get("retval_keyword"):
                injected.setdefault(call["retval_keyword"], []).append(value)
        for key, values in injected.items():
            kwargs[key] = values[0] if len(values) == 1 else values
        runner = electron.get("run_with")
        if runner is not None:  # a Covalent-style executor object with run(fn, args, kwargs, meta)
            value = runner(electron["fn"], args, kwargs, electron.get("meta", {}))
        else:
            value = electron["fn"](*args, **kwargs)
        if transfers:
            file_transfers(transfers, "after", backend_transfers)
        for call in hooks.get("call_after", ()):
            _call_hook(call, stdout_fd, stderr_fd)
        if isinstance(value, ChildRun):
            header.update({"ok": True, "child": value.dispatch_id})
        else:
            try:
                payload = cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is the task's
                raise TaskFailed(
                    f"the result of {electron.get('name', 'the task')} cannot be pickled: "
                    f"{type(exc).__name__}: {exc}", "unpicklable_result") from None
            header.update({"ok": True, "preview": value_preview(value)})
    except TaskFailed as exc:
        header.update({"error": str(exc), "reason": exc.reason})
        write_fd(stderr_fd, f"{exc}\n")
    except BaseException as exc:  # noqa: BLE001 - the worker never raises across the boundary
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = "".join(traceback.format_exception(type(exc), exc, _user_traceback(exc)))
        header.update({"error": text, "reason": "exception"})
        write_fd(stderr_fd, text)
    header["end"] = time.time()
    return header, payload


def _user_traceback(exc: BaseException):
    """Drop this module's frames so the traceback starts in the user's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb or exc.__traceback__


def _run_shell(command: str, stdout_fd: int, stderr_fd: int) -> None:
    rc = subprocess.call(command, shell=True, stdout=stdout_fd, stderr=stderr_fd,
                         executable="/bin/bash")
    if rc != 0:
        raise TaskFailed(f"DepsBash command failed with exit code {rc}: {command}", "deps")


def _pip_install(pip: Dict[str, Any], stdout_fd: int, stderr_fd: int) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *pip.get("packages", ())]
    reqs_file = None
    if pip.get("requirements"):
        reqs_file = f"/tmp/cov-reqs-{os.getpid()}-{secrets.token_hex(3)}.txt"
        with open(reqs_file, "w") as f:
            f.write(pip["requirements"])
        cmd += ["-r", reqs_file]
    try:
        rc = subprocess.call(cmd, stdout=stdout_fd, stderr=stderr_fd)
    finally:
        if reqs_file:
            os.unlink(reqs_file)
    if rc != 0:
        raise TaskFailed(f"DepsPip install failed with exit code {rc}: {' '.join(cmd[4:])}", "deps")


def load_inputs(inputs: List[Tuple[str, Any, Any]], load: Callable[[Any], Any]
                ) -> Tuple[List[Any], Dict[str, Any]]:
    """Place each input value by its edge: ("arg", index, src) or ("kwarg", name, src)."""
    positional: Dict[int, Any] = {}
    kwargs: Dict[str, Any] = {}
    for kind, key, source in inputs:
        if kind == "arg":
            positional[int(key)] = load(source)
        else:
            kwargs[key] = load(source)
    args = [positional[i] for i in sorted(positional)]
    return args, kwargs

