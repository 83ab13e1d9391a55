"""The JSON that ``cov ... --json`` prints and the web API serves: one encoder, one schema.

docs/json.md documents the documents. Three rules hold everywhere:

- every document is an object whose first field is ``schema`` (``SCHEMA``, raised when a field
  changes meaning or goes away; new fields do not raise it);
- every time is a number: seconds since 1970-01-01 UTC (``timestamp``), as ``time.time()``
  gives and ``jq 'todate'`` reads;
- a value JSON cannot hold (an object, a tuple-keyed dict, NaN, infinity) is ``{"repr": "..."}``,
  never a silent string (``jsonable``).
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Dict, Optional

SCHEMA = 1


def document(body: Dict[str, Any]) -> Dict[str, Any]:
    """``body`` as a document: ``schema`` first, then its fields."""
    return {"schema": SCHEMA, **{k: v for k, v in body.items() if k != "schema"}}


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` (a dict becomes a ``document``), values JSON cannot hold
    marked as reprs. The C encoder does the usual case in one pass (indenting would force the
    pure-Python one, 2x slower on 10,000 tasks); only a document holding NaN or a key JSON
    refuses is walked by ``jsonable``."""
    if isinstance(value, dict):
        value = document(value)
    try:
        return json.dumps(value, allow_nan=False, default=_marked)
    except (TypeError, ValueError):
        return json.dumps(jsonable(value), allow_nan=False)


def dumps_spliced(value: Dict[str, Any], last: str) -> str:
    """``dumps(value)`` with ``last``, JSON text made elsewhere (``runner.query_json``), as
    the value of its last field, which ``value`` holds as ``[]``."""
    text = dumps(value)
    if not text.endswith(": []}"):
        raise ValueError("the last field of a spliced document must be []")
    return text[:-3] + last + "}"


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that JSON holds as it is: str, int, finite float, bool and None
    pass, lists and tuples become lists, dicts with str (or int, float, bool, None: JSON makes
    them text) keys are copied; anything else, and anything nested past 500 levels, becomes
    ``{"repr": repr(value)}``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _marked(value)
    if _depth > 500:
        return _marked(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, dict) and all(k is None or isinstance(k, (str, int, float, bool))
                                       for k in value):
        return {_key(k): jsonable(v, _depth + 1) for k, v in value.items()}
    return _marked(value)


def _key(key: Any) -> str:
    """A dict key as ``json.dumps`` spells it (``True`` -> "true", ``None`` -> "null")."""
    return key if isinstance(key, str) else json.dumps(key)


def _marked(value: Any) -> Dict[str, str]:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return {"repr": text}


def timestamp(value: Any) -> Optional[float]:
    """A time as seconds since the epoch (UTC): a number as it is, ISO 8601 text (the manifest's
    ``created``; without an offset it is taken as UTC) parsed; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def result_document(dispatch_id: str, status: str, value: Any, error: Optional[str]
                    ) -> Dict[str, Any]:
    """What ``cov result --json`` prints for a run (and ``cov dispatch --wait --json`` for
    each, without its own ``schema``): ``result`` is the value (``jsonable``; None unless
    COMPLETED)."""
    return {"dispatch_id": dispatch_id, "status": status, "result": jsonable(value),
            "error": error}
