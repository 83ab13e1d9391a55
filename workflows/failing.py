"""One branch fails, the other finishes: the run ends FAILED with the failing node named.

`cov dispatch workflows/failing.py --wait` exits 3; `cov status latest` and `cov logs latest`
show which task failed and its traceback.
"""
import covalent as ct


@ct.electron
def ok(x):
    return x + 1


@ct.electron
def divide(a, b):
    return a / b


@ct.electron
def combine(a, b):
    return a + b


@ct.lattice
def failing(x=1):
    """divide() raises ZeroDivisionError; ok() still completes."""
    good = ok(x)
    bad = divide(x, 0)
    return combine(good, bad)
