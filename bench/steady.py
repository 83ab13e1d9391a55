"""Steady-state dependency latency of a finished W2/W3 run, read from its event log.

Whole-process walls include the fixed costs (interpreters, imports, the runner's start); these
figures leave them out: W2, the median gap between a task's end and the start of the next one
in the chain (ms per hop); W3, the median time from one layer's last end to the next layer's
(ms per dependent layer, its 10 tasks included). Times are the workers' own (the end events'
``start``/``end``), so they do not depend on when the runner wrote them.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import List, Optional


def _ends(home: Path) -> List[dict]:
    events = []
    for log in home.glob("*/events.jsonl"):
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("ev") == "end" and event.get("start") and event.get("end"):
                events.append(event)
    return sorted(events, key=lambda e: e["start"])


def steady_ms(workload: str, home: Path) -> Optional[float]:
    """ms per hop (W2) or per dependent layer (W3) of the run in runs home ``home``."""
    ends = _ends(home)
    if workload == "W2" and len(ends) >= 3:
        return 1000 * statistics.median(b["start"] - a["end"] for a, b in zip(ends, ends[1:]))
    if workload == "W3" and len(ends) >= 1001:
        layers = [ends[j:j + 10] for j in range(0, 1000, 10)]
        last = [max(e["end"] for e in layer) for layer in layers]
        return 1000 * statistics.median(b - a for a, b in zip(last, last[1:]))
    return None
