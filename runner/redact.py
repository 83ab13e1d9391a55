"""Secrets in executor configurations: which fields are secrets, and masking them.

This is the one definition. The manifest writer (``covalent_cli.dispatch``), ``cov config``, the
web UI and ``repr()`` of executors all call ``mask_secrets``.

The rule, on a field's name (a key at any depth, e.g. a Slurm ``variables`` entry):

* a name whose last word is ``file``, ``path``, ``dir`` or ``filename`` names a **path**, never a
  secret: ``ssh_key_file``, ``key_file``, ``cert_file``, ``password_file``, ``bashrc_path``;
* otherwise it is a **secret** if it contains ``password``, ``passwd``, ``passphrase``,
  ``secret``, ``token``, ``credential`` or ``apikey``, or one of its words is ``pwd`` or
  ``auth``, or its last word is ``key``: ``password``, ``ssh_key_passphrase``, ``api_key``,
  ``private_key``, ``API_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``pwd``, ``auth``.

Words are split at ``_``, ``-``, ``.``, spaces and camelCase humps (``apiKey`` -> api, key).
A secret's value shows as ``***`` (an empty value stays empty: nothing to hide).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Dict, List, Tuple

MASK = "***"
_MARKERS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey")
_WORDS = frozenset({"pwd", "auth"})
_PATH_WORDS = frozenset({"file", "path", "dir", "filename"})
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)  # names repeat: every node's executor has the same fields
def is_secret(name: Any) -> bool:
    """Whether a field called ``name`` holds a secret (see the module docstring)."""
    words = [w.lower() for w in _SPLIT.split(str(name)) if w]
    if not words or words[-1] in _PATH_WORDS:
        return False
    lowered = str(name).lower()
    return (any(marker in lowered for marker in _MARKERS) or bool(_WORDS.intersection(words))
            or words[-1] == "key")


def mask_secrets(value: Any) -> Any:
    """A copy with the values of secret fields replaced by ``***``, at any depth."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret(k) and v not in (None, "") else mask_secrets(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def split_secrets(value: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the masked copy, the secret values alone at their places) of a configuration."""
    secrets: Dict[str, Any] = {}
    for key, item in value.items():
        if is_secret(key) and item not in (None, ""):
            secrets[key] = item
        elif isinstance(item, dict):
            inner = split_secrets(item)[1]
            if inner:
                secrets[key] = inner
    return mask_secrets(value), secrets


def unmask(masked: Dict[str, Any], secrets: Dict[str, Any]) -> Dict[str, Any]:
    """``masked`` with the secret values put back where they were taken from."""
    merged = dict(masked)
    for key, item in secrets.items():
        if isinstance(item, dict) and isinstance(merged.get(key), dict):
            merged[key] = unmask(merged[key], item)
        else:
            merged[key] = item
    return merged


def secret_strings(secrets: Any) -> List[str]:
    """Every secret value (a string, at any depth of ``split_secrets``' second part), longest
    first, so that masking one never leaves the tail of a longer one."""
    found: List[str] = []
    if isinstance(secrets, dict):
        for item in secrets.values():
            found += secret_strings(item)
    elif isinstance(secrets, (list, tuple)):
        for item in secrets:
            found += secret_strings(item)
    elif isinstance(secrets, (str, bytes)) and secrets:
        found.append(secrets if isinstance(secrets, str) else secrets.decode(errors="replace"))
    return sorted(set(found), key=len, reverse=True)


def mask_text(text: str, secrets: Any) -> str:
    """``text`` (a task's source, say: a script may spell a password as a literal) with every
    secret value of ``secrets`` replaced by ``***``."""
    for value in secret_strings(secrets):
        text = text.replace(value, MASK)
    return text


def has_mask(value: Any) -> bool:
    """Whether a (manifest's) configuration holds a masked value anywhere."""
    if isinstance(value, dict):
        return any(has_mask(v) for v in value.values())
    if isinstance(value, list):
        return any(has_mask(v) for v in value)
    return value == MASK


def task_secrets(run: str, node: int) -> Dict[str, Any]:
    """The secret fields of the executor of ``node`` in run directory ``run`` ({} if none)."""
    from runner.rundir import RunDir, RunDirError

    rundir = RunDir(run)
    try:
        key = rundir.manifest.node(node).executor or "local"
    except (RunDirError, KeyError, IndexError, StopIteration):
        return {}
    return rundir.executor_secrets(key)
