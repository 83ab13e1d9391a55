"""N tasks that each print a line, and their sum:
`cov dispatch workflows/printing_sweep.py -a n=1000 --wait`, then `cov logs latest`.

Also the run of small results and short logs that bench/files.py and
tests/reliability/test_files_per_task.py count the files of (format 2.0 packs them)."""
import covalent as ct


@ct.electron
def echo(i):
    print("task", i)
    return i


@ct.electron
def total(values):
    return sum(values)


@ct.lattice
def many(n=100):
    """Sum of 0..n-1, one printing task per number."""
    return total([echo(i) for i in range(n)])
