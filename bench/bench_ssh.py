"""Per-task overhead of the SSH executor on a reused connection, next to a bare Fabric
``run('true')`` round trip measured in the same run.

    python bench/bench_ssh.py [--tasks 40] [--rounds 50]

Needs root and openssh-server (``tests/infra/install_system_deps.sh``): it starts a private sshd
on 127.0.0.1 with ``tests/infra/sshd.sh`` (user covtest, whose shell startup is clean) and stops
it at the end. Reported, as medians:

- ``fabric run('true')``: Fabric's ``Connection.run`` on an open connection (Fabric defaults);
- ``fabric run('true') + TCP_NODELAY``: the same with Nagle off, as cov's connections are;
- ``cov ssh exec 'true'``: ``runner.ssh``'s raw exec channel (what the backend uses);
- ``remote python start``: ``python3 -c pass`` over that channel (a task's floor: one process);
- ``ssh task``: one task of a chain run through the runner on the SSH executor, from its claim
  to its end event (bundle up, ``worker.py`` started with ``setsid``, wait, result down);
- ``local task``: the same chain on the local pool, for scale.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def step(x: int) -> int:
    return x + 1


def _median_ms(samples: List[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def _timed(fn, rounds: int) -> List[float]:
    fn()  # warm
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def _chain_task_times(home: Path, executor: object, n: int) -> List[float]:
    import covalent_cli as ct
    from runner.rundir import RunDir

    task = ct.electron(step, executor=executor)

    @ct.lattice
    def chain(x):
        for _ in range(n):
            x = task(x)
        return x

    result = ct.dispatch_sync(chain)(0)
    assert result.result == n, result.error
    claims: Dict[int, float] = {}
    ends: Dict[int, float] = {}
    run = RunDir(home / result.dispatch_id)
    steps = {node.id for node in run.manifest.nodes if node.name == "step"}
    with open(run.events_path) as f:
        for line in f:
            event = json.loads(line)
            if event.get("ev") == "claim":
                claims[event["node"]] = event["t"]
            elif event.get("ev") == "end":
                ends[event["node"]] = event["t"]
    return [ends[node] - claims[node] for node in steps]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40, help="tasks in each chain")
    parser.add_argument("--rounds", type=int, default=50, help="round trips per measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cov-bench-ssh-"))
    work.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sshd = work / "sshd"
    subprocess.run(["bash", str(REPO / "tests/infra/sshd.sh"), "start", str(sshd), str(port)],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        os.environ.update(COV_HOME=str(work / "home"), COV_CONFIG=str(work / "config.yaml"),
                          COV_SSH_CONFIG=str(sshd / "ssh_config"))
        (work / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
        from fabric import Connection

        from runner.ssh import HostSpec, pool

        conn = Connection("127.0.0.1", port=port, user="covtest", connect_kwargs={
            "key_filename": str(sshd / "client_key"), "look_for_keys": False,
            "allow_agent": False})
        conn.client.load_host_keys(str(sshd / "known_hosts"))
        fabric_plain = _timed(lambda: conn.run("true", hide=True, in_stream=False), args.rounds)
        conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fabric_nodelay = _timed(lambda: conn.run("true", hide=True, in_stream=False), args.rounds)
        conn.close()
        host = pool().host(HostSpec("covtest"))
        raw = _timed(lambda: host.run("true"), args.rounds)
        python = _timed(lambda: host.run("python3 -c pass"), max(10, args.rounds // 5))
        host.close()

        import covalent_cli as ct
        from runner.daemon import stop_runners

        home = work / "home"
        ssh_tasks = _chain_task_times(home, ct.executor.SSHExecutor(hostname="covtest"),
                                      args.tasks)
        local_tasks = _chain_task_times(home, "local", args.tasks)
        stop_runners(home)
    finally:
        subprocess.run(["bash", str(REPO / "tests/infra/sshd.sh"), "stop", str(sshd)],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    rows = [("fabric run('true')", fabric_plain), ("fabric run('true') + TCP_NODELAY",
                                                   fabric_nodelay),
            ("cov ssh exec 'true'", raw), ("remote python start", python),
            (f"ssh task (chain of {args.tasks})", ssh_tasks),
            (f"local task (chain of {args.tasks})", local_tasks)]
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  median ms  (n)")
    for name, samples in rows:
        print(f"{name:<{width}}  {_median_ms(samples):>9}  ({len(samples)})")
    overhead = statistics.median(ssh_tasks) - statistics.median(python)
    print(f"ssh task minus a remote python start: {overhead * 1000:.1f} ms "
          f"({statistics.median(ssh_tasks) / statistics.median(fabric_plain):.1f}x a bare "
          f"fabric run('true'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
