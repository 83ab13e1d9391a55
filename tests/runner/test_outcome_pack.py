"""The pack file codec (runner/outcome_pack.py) on real files: records are outcome files'
bytes, a scan stops at a torn last record whichever way it is torn, one writer never appends to
another's file, and locations that are not a pack's are refused."""
from __future__ import annotations

import json
import os

import pytest

from runner import layout
from runner.outcome import read_outcome_file
from runner.outcome_pack import PackWriter, encode_record, parse_record, scan, valid_location


def _records(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(scan(fd))
    finally:
        os.close(fd)


def test_a_record_is_an_outcome_files_bytes(tmp_path):
    record = encode_record({"ok": True, "node": 3, "attempt": 1}, b"pickle")
    (tmp_path / "3.pkl").write_bytes(record)
    with open(tmp_path / "3.pkl", "rb") as f:
        header, payload = read_outcome_file(f, payload=True)
    assert header == {"ok": True, "node": 3, "attempt": 1, "len": 6} and payload == b"pickle"
    assert parse_record(record) == (header, b"pickle")


@pytest.mark.parametrize("cut", ["payload", "header", "newline"])
def test_a_scan_stops_at_a_torn_last_record(tmp_path, cut):
    writer = PackWriter(str(tmp_path), layout.OUTCOME_PACK_SUFFIX)
    whole = [writer.append(encode_record({"ok": True, "node": n, "attempt": 1}, b"x" * 50))
             for n in range(3)]
    last = writer.append(encode_record({"ok": True, "node": 9, "attempt": 1}, b"y" * 50))
    writer.close()
    path = tmp_path / last[0]
    header_end = path.read_bytes().index(b"\n", last[1])
    size = {"payload": last[1] + last[2] - 1, "header": last[1] + 5, "newline": header_end}[cut]
    os.truncate(path, size)
    found = _records(str(path))
    assert [(o, n) for o, n, _ in found] == [(w[1], w[2]) for w in whole]
    assert [h["node"] for _, _, h in found] == [0, 1, 2]
    data = path.read_bytes()
    assert parse_record(data[last[1]:]) == (None, b"")  # a reader of its location: absent


def test_each_writer_makes_a_file_of_its_own(tmp_path):
    first = PackWriter(str(tmp_path), layout.OUTCOME_PACK_SUFFIX)
    second = PackWriter(str(tmp_path), layout.OUTCOME_PACK_SUFFIX)
    a = first.append(b'{"len": 0, "node": 1}\n')
    b = second.append(b'{"len": 0, "node": 2}\n')
    assert a[0] != b[0] and a[1] == b[1] == 0
    assert sorted(os.listdir(tmp_path)) == sorted([a[0], b[0]])
    assert all(layout.is_pack_name(n, layout.OUTCOME_PACK_SUFFIX) for n in os.listdir(tmp_path))
    first.close()
    second.close()


@pytest.mark.parametrize("at", [["../manifest.yaml", 0, 10], ["/etc/passwd", 0, 1],
                                ["pack-1-a.bin", -1, 3], ["pack-1-a.bin", 0], "pack-1-a.bin",
                                ["pack-1-a.log", 0, 3], ["pack-.bin", 0, 3],
                                ["pack-1-a.bin", 0.5, 3], ["pack-1/../x.bin", 0, 3]])
def test_a_location_that_is_not_a_packs_is_refused(at):
    assert valid_location(at, layout.OUTCOME_PACK_SUFFIX) is None


def test_a_valid_location(tmp_path):
    assert valid_location(["pack-12-ab01cd.bin", 4, 7], layout.OUTCOME_PACK_SUFFIX) == \
        ("pack-12-ab01cd.bin", 4, 7)


def test_a_header_line_that_is_json_but_not_an_object_ends_the_scan(tmp_path):
    path = tmp_path / layout.pack_file("1-aaaaaa", layout.OUTCOME_PACK_SUFFIX)
    good = encode_record({"ok": True, "node": 1, "attempt": 1}, b"v")
    path.write_bytes(good + json.dumps([1, 2]).encode() + b"\n")
    assert [h["node"] for _, _, h in _records(str(path))] == [1]
