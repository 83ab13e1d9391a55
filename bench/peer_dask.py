"""dask.delayed versions of the four workloads (a copy of shared/reference/peer-bench/dask/run.py,
run by bench/run.py beside cov when dask is installed: `pip install -e .[bench]`).

usage: python bench/peer_dask.py W1|W2|W3|W4 threads|processes|distributed
  threads      dask.compute(..., scheduler="threads")    (default pool: one thread per core)
  processes    dask.compute(..., scheduler="processes")  (multiprocessing pool, one per core)
  distributed  distributed.LocalCluster(n_workers=2, processes=True), dashboard off,
               scheduler on 127.0.0.1
"""
import sys
import time

import dask


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

d_inc, d_total, d_layer, d_nap = (dask.delayed(f) for f in (inc, total, layer, nap))


def build(w):
    if w == "W1":
        return d_total([d_inc(i) for i in range(1000)])
    if w == "W2":
        x = 0
        for _ in range(200):
            x = d_inc(x)
        return x
    if w == "W3":
        prev = [d_inc(j) for j in range(10)]
        for _ in range(99):
            prev = [d_layer(prev, j) for j in range(10)]
        return d_total(prev)
    if w == "W4":
        return d_total([d_nap(i) for i in range(40)])


def main():
    w, mode = sys.argv[1], sys.argv[2]
    graph = build(w)
    if mode in ("threads", "processes"):
        (r,) = dask.compute(graph, scheduler=mode)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            r = client.compute(graph).result()
    print(w, mode, r)
    return 0 if r == EXPECTED[w] else 1


if __name__ == "__main__":
    sys.exit(main())
