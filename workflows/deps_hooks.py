"""Dependencies and hooks: a bash command and a call_before whose value is injected.

Order at run time: DepsBash, DepsPip, call_before, the task, call_after.
"""
import covalent as ct


def make_config():
    return {"scale": 3}


def report_done():
    print("task finished")


@ct.electron(
    deps_bash=ct.DepsBash(["echo preparing scratch space", "mkdir -p /tmp/cov-deps-example"]),
    call_before=[ct.DepsCall(make_config, retval_keyword="config")],
    call_after=[ct.DepsCall(report_done)],
)
def scaled(x, config=None):
    return x * config["scale"]


@ct.lattice
def deps_hooks(x=7):
    """x times the scale that call_before provides."""
    return scaled(x)
