"""A loop whose length depends on a task's result, written by nesting sublattices.

A lattice body cannot look at task results (they are placeholders), but a sublattice is built
when it runs, from its real inputs: `halve_until_small` calls itself as a sublattice until the
value is small. `cov dispatch workflows/sublattice_loop.py -a start=100 --wait` prints 6.
"""
import covalent as ct


@ct.electron
def halve(x):
    return x // 2


@ct.electron
def is_small(x):
    return x < 10


@ct.electron
@ct.lattice
def halve_until_small(x):
    y = halve(x)
    # Runs when this sublattice is built, with x a real number.
    if x // 2 < 10:
        return y
    return halve_until_small(y)


@ct.lattice
def sublattice_loop(start=100):
    """Halves start until it is below 10, one nested run per step."""
    return halve_until_small(start)
