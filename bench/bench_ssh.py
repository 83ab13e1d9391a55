"""The SSH executor on a reused connection: per-task cost of the persistent worker next to the
per-task launcher (``persistent_worker=False``) and a bare Fabric loop, measured in the same run.

    python bench/bench_ssh.py [--runs 5] [--tasks 100] [--chain 50] [--rounds 50]

Needs root and openssh-server (``tests/infra/install_system_deps.sh``): it starts a private sshd
on 127.0.0.1 with ``tests/infra/sshd.sh`` (user covtest, whose shell startup is clean) and stops
it at the end. Talks to that loopback sshd only. Reported, as medians:

- ``fabric run('true')``: Fabric's ``Connection.run`` on an open connection (Fabric defaults);
- ``fabric run('true') + TCP_NODELAY``: the same with Nagle off, as cov's connections are;
- ``bare fabric loop, python per task``: ``run('python3 -c ...')`` on one connection with
  TCP_NODELAY, the floor of any design that starts a Python per task;
- ``cov ssh exec 'true'``: ``runner.ssh``'s raw exec channel (what the backend uses);
- ``remote python start``: ``python3 -c pass`` over that channel;
- workloads, through the runner, each in both modes, in interleaved rounds on one warm
  runner (connection and worker already up): ``N tasks`` (a fan-out of N trivial SSH tasks
  and a local collect; per task = first claim to last end of the SSH tasks / N) and ``chain of
  M`` (per step = first claim to last end / M, the runner's scheduling of each next step
  included), and ``local`` for scale.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.loopback_sshd import start_sshd, stop_sshd  # noqa: E402
from bench.timing import median_ms, timed  # noqa: E402


def step(x: int) -> int:
    return x + 1


def collect(values: list) -> int:
    return len(values)


def _span(home: Path, dispatch_id: str, name: str) -> float:
    """First claim to last end of the nodes called ``name`` in the run's event log."""
    from runner.rundir import RunDir

    run = RunDir(home / dispatch_id)
    nodes = {node.id for node in run.manifest.nodes if node.name == name}
    claims: List[float] = []
    ends: List[float] = []
    with open(run.events_path) as f:
        for line in f:
            event = json.loads(line)
            if event.get("node") in nodes:
                if event.get("ev") == "claim":
                    claims.append(event["t"])
                elif event.get("ev") == "end":
                    ends.append(event["t"])
    run.close()
    return max(ends) - min(claims)


def _fan_out(home: Path, executor: object, n: int) -> float:
    import covalent_cli as ct

    task = ct.electron(step, executor=executor)
    total = ct.electron(collect)

    @ct.lattice
    def fan(k):
        return total([task(i) for i in range(k)])

    result = ct.dispatch_sync(fan)(n)
    assert result.result == n, result.error
    return _span(home, result.dispatch_id, "step") / n


def _chain(home: Path, executor: object, n: int) -> float:
    import covalent_cli as ct

    task = ct.electron(step, executor=executor)

    @ct.lattice
    def chain(x):
        for _ in range(n):
            x = task(x)
        return x

    result = ct.dispatch_sync(chain)(0)
    assert result.result == n, result.error
    return _span(home, result.dispatch_id, "step") / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each workload and mode")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in the fan-out")
    parser.add_argument("--chain", type=int, default=50, help="steps in the chain")
    parser.add_argument("--rounds", type=int, default=50, help="round trips per measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cov-bench-ssh-"))
    work.chmod(0o755)
    sshd, port = start_sshd(work)
    try:
        os.environ.update(COV_HOME=str(work / "home"), COV_CONFIG=str(work / "config.yaml"),
                          COV_SSH_CONFIG=str(sshd / "ssh_config"))
        (work / "config.yaml").write_text("runner:\n  idle_timeout: 60\n")
        from fabric import Connection

        from runner.ssh import HostSpec, pool

        conn = Connection("127.0.0.1", port=port, user="covtest", connect_kwargs={
            "key_filename": str(sshd / "client_key"), "look_for_keys": False,
            "allow_agent": False})
        conn.client.load_host_keys(str(sshd / "known_hosts"))
        fabric_plain = timed(lambda: conn.run("true", hide=True, in_stream=False), args.rounds)
        conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fabric_nodelay = timed(lambda: conn.run("true", hide=True, in_stream=False), args.rounds)
        fabric_python = timed(lambda: conn.run("python3 -c 'print(1 + 1)'", hide=True,
                                                in_stream=False), max(10, args.rounds // 2))
        conn.close()
        host = pool().host(HostSpec("covtest"))
        raw = timed(lambda: host.run("true"), args.rounds)
        python = timed(lambda: host.run("python3 -c pass"), max(10, args.rounds // 5))
        host.close()

        import covalent_cli as ct
        from runner.daemon import stop_runners

        home = work / "home"
        modes = {"persistent worker": ct.executor.SSHExecutor(hostname="covtest"),
                 "per-task launcher": ct.executor.SSHExecutor(hostname="covtest",
                                                              persistent_worker=False),
                 "local": "local"}
        for executor in modes.values():  # warm: the runner, the connection, the worker
            _chain(home, executor, 3)
        fan: Dict[str, List[float]] = {name: [] for name in modes}
        chain: Dict[str, List[float]] = {name: [] for name in modes}
        for _ in range(args.runs):  # interleaved, so that a load falls on every mode alike
            for name, executor in modes.items():
                fan[name].append(_fan_out(home, executor, args.tasks))
                chain[name].append(_chain(home, executor, args.chain))
        stop_runners(home)
    finally:
        stop_sshd(sshd)
        shutil.rmtree(work, ignore_errors=True)
    rows = [("fabric run('true')", fabric_plain),
            ("fabric run('true') + TCP_NODELAY", fabric_nodelay),
            ("bare fabric loop, python per task", fabric_python),
            ("cov ssh exec 'true'", raw), ("remote python start", python)]
    for name in modes:
        rows.append((f"{name}: {args.tasks} tasks, per task", fan[name]))
        rows.append((f"{name}: chain of {args.chain}, per step", chain[name]))
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  median ms  (n)")
    for name, samples in rows:
        print(f"{name:<{width}}  {median_ms(samples):>9}  ({len(samples)})")
    new, old, bare = "persistent worker", "per-task launcher", statistics.median(fabric_python)
    for label, table in ((f"{args.tasks} tasks", fan), (f"chain of {args.chain}", chain)):
        ours = statistics.median(table[new])
        print(f"{label}: persistent/per-task {ours / statistics.median(table[old]):.2f}, "
              f"persistent/bare fabric loop {ours / bare:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
