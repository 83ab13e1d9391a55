"""Statuses are a str Enum that reads, prints and serializes exactly as Covalent's strings."""
import json

from runner.state import COMPLETED, FAILED, STATUSES, TERMINAL, Status, fold


def test_a_status_is_its_string_everywhere():
    assert COMPLETED is Status.COMPLETED and COMPLETED == "COMPLETED"
    assert "COMPLETED" in TERMINAL and "RUNNING" in STATUSES and "BOGUS" not in STATUSES
    assert {"COMPLETED": 1}[COMPLETED] == 1  # hashes like the string
    assert json.dumps({"status": COMPLETED}) == '{"status": "COMPLETED"}'
    assert (str(FAILED), f"{FAILED}", f"{FAILED:>7}", "%s" % FAILED, format(FAILED)) == \
        ("FAILED", "FAILED", " FAILED", "FAILED", "FAILED")


def test_the_fold_gives_status_members_from_the_logs_strings():
    state = fold([{"ev": "run", "status": "RUNNING", "t": 1.0},
                  {"ev": "claim", "node": 0, "attempt": 1, "t": 1.0},
                  {"ev": "end", "node": 0, "attempt": 1, "status": "COMPLETED", "t": 2.0}])
    assert type(state.status) is Status and state.status == "RUNNING"
    assert type(state.tasks[0].status) is Status and state.tasks[0].status is COMPLETED
    assert state.tasks[0].finished
