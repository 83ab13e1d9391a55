"""The four peer workloads (shared/reference/peer-bench), as Covalent code and as a bare pool.

usage: python bench/workloads.py W1|W2|W3|W4 cov|pool
Prints one JSON line: result, wall seconds inside the process, and (cov) the runner's peak RSS.
"""
import json
import sys
import time

T0 = time.time()

# --- the task functions: identical to the peers' ------------------------------------------
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


def run_pool(w):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        if w == "W1":
            xs = [f.result() for f in [ex.submit(inc, i) for i in range(1000)]]
            return ex.submit(total, xs).result()
        if w == "W2":
            x = 0
            for _ in range(200):
                x = ex.submit(inc, x).result()
            return x
        if w == "W3":
            prev = [f.result() for f in [ex.submit(inc, j) for j in range(10)]]
            for _ in range(99):
                prev = [f.result() for f in [ex.submit(layer, prev, j) for j in range(10)]]
            return ex.submit(total, prev).result()
        if w == "W4":
            xs = [f.result() for f in [ex.submit(nap, i) for i in range(40)]]
            return ex.submit(total, xs).result()


def run_cov(w):
    import covalent_cli as ct

    e_inc, e_total, e_layer, e_nap = (ct.electron(f) for f in (inc, total, layer, nap))

    @ct.lattice
    def W1():
        return e_total([e_inc(i) for i in range(1000)])

    @ct.lattice
    def W2():
        x = 0
        for _ in range(200):
            x = e_inc(x)
        return x

    @ct.lattice
    def W3():
        prev = [e_inc(j) for j in range(10)]
        for _ in range(99):
            prev = [e_layer(prev, j) for j in range(10)]
        return e_total(prev)

    @ct.lattice
    def W4():
        return e_total([e_nap(i) for i in range(40)])

    lattice = {"W1": W1, "W2": W2, "W3": W3, "W4": W4}[w]
    return ct.dispatch_sync(lattice)().result


def runner_peak_rss_mb(home):
    """VmHWM of the live runner(s) of ``home`` (they exit after their idle timeout)."""
    from runner.liveness import read_runners

    peak = 0.0
    for info in read_runners(home):
        try:
            with open(f"/proc/{info['pid']}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


if __name__ == "__main__":
    w, mode = sys.argv[1], sys.argv[2]
    result = run_cov(w) if mode == "cov" else run_pool(w)
    report = {"workload": w, "mode": mode, "result": result, "ok": result == EXPECTED[w],
              "inner_wall": time.time() - T0}
    if mode == "cov":
        from runner.config import runs_home

        report["runner_rss_mb"] = runner_peak_rss_mb(runs_home())
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)
