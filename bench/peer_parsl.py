"""Parsl python_app versions of the four workloads (a copy of shared/reference/peer-bench/parsl/run.py,
run by bench/run.py beside cov when parsl is installed: `pip install -e .[bench]`).

usage: python bench/peer_parsl.py W1|W2|W3|W4 htex|threads
  htex     HighThroughputExecutor, one LocalProvider block, max_workers_per_node=2,
           interchange on 127.0.0.1
  threads  parsl ThreadPoolExecutor(max_threads=2) (parsl's default size)
Dependencies are expressed by passing AppFutures into apps (the DFK resolves them).
run_dir goes to a fresh temporary directory so nothing is written beside the script.
"""
import sys
import time

import parsl
from parsl.app.app import python_app
from parsl.config import Config


# --- the task functions: identical in every engine's script ---------------------
def inc(x):
    return x + 1


def total(xs):
    return sum(xs)


def layer(xs, j):
    return sum(xs) % 1000003 + j


def nap(i):
    time.sleep(0.5)
    return i


EXPECTED = {"W1": 500500, "W2": 200, "W3": 5511625, "W4": 780}
# ---------------------------------------------------------------------------------


# Parsl resolves futures only when they are direct args or in `inputs=`, and an HTEX
# worker has no __main__ globals: so each app carries the same body as the function above.
@python_app
def p_inc(x):
    return x + 1


@python_app
def p_total(inputs=()):
    return sum(inputs)


@python_app
def p_layer(j, inputs=()):
    return sum(inputs) % 1000003 + j


@python_app
def p_nap(i):
    import time
    time.sleep(0.5)
    return i


def config(mode):
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="parsl-runinfo-")
    if mode == "threads":
        from parsl.executors.threads import ThreadPoolExecutor

        return Config(executors=[ThreadPoolExecutor(label="threads", max_threads=2)],
                      run_dir=run_dir)
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    return Config(
        executors=[HighThroughputExecutor(
            label="htex", max_workers_per_node=2, address="127.0.0.1",
            loopback_address="127.0.0.1",
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))],
        run_dir=run_dir)


def run(w):
    if w == "W1":
        return p_total(inputs=[p_inc(i) for i in range(1000)]).result()
    if w == "W2":
        x = 0
        for _ in range(200):
            x = p_inc(x)
        return x.result()
    if w == "W3":
        prev = [p_inc(j) for j in range(10)]
        for _ in range(99):
            prev = [p_layer(j, inputs=prev) for j in range(10)]
        return p_total(inputs=prev).result()
    if w == "W4":
        return p_total(inputs=[p_nap(i) for i in range(40)]).result()


def main():
    w, mode = sys.argv[1], sys.argv[2]
    with parsl.load(config(mode)):
        r = run(w)
    print(w, mode, r)
    return 0 if r == EXPECTED[w] else 1


if __name__ == "__main__":
    sys.exit(main())
