"""A fan-out of N squares and a sum: `cov dispatch workflows/map_reduce.py -a n=100 --wait`."""
import covalent as ct


@ct.electron
def square(x):
    return x * x


@ct.electron
def add_all(values):
    return sum(values)


@ct.lattice
def map_reduce(n=20):
    """Sum of squares 0..n-1, one task per square."""
    return add_all([square(i) for i in range(n)])
