"""Leptons (``ct.Lepton``, ``ct.leptons.bash``) as electrons in a lattice, as Covalent's
how-tos use them (construct_lepton, construct_bash_task), run by a real runner."""
from __future__ import annotations

from pathlib import Path

import pytest

import covalent_cli as ct


def test_python_module_lepton_in_a_lattice(cov_home: Path) -> None:
    sqrt = ct.Lepton(language="python", library_name="math", function_name="sqrt")
    join = ct.Lepton("python", library_name="os.path", function_name="join")

    @ct.lattice
    def wf(x):
        return [sqrt(x), join("a", "b")]

    result = ct.dispatch_sync(wf)(16.0)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [4.0, "a/b"]
    assert result.get_node_result(0)["node_name"] == "sqrt"  # Covalent's node name
    assert sqrt(9.0) == 3.0  # outside a lattice: a plain call


def test_missing_module_function_fails_the_task_naming_it(cov_home: Path) -> None:
    missing = ct.Lepton(library_name="math", function_name="no_such_function")

    @ct.lattice
    def wf():
        return missing(1)

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    assert "Could not find the function 'no_such_function' in 'math'" in \
        result.get_node_result(0)["stderr"]


def test_bash_lepton_with_named_outputs_and_arguments(cov_home: Path) -> None:
    """INPUT_OUTPUT keyword arguments are exported and substituted; OUTPUT values are read back
    from the shell's variables and converted to their argtypes; positional ones are $1..."""
    versions = ct.Lepton(
        language="bash",
        command="version=`echo {TOOL} 12.3.4 | awk '{{print $NF}}'` "
                "&& IFS=. read major minor patch <<< $version && echo said $1",
        argtypes=[(str, ct.Lepton.INPUT_OUTPUT), (int, ct.Lepton.OUTPUT),
                  (int, ct.Lepton.OUTPUT), (int, ct.Lepton.OUTPUT)],
        named_outputs=["TOOL", "major", "minor", "patch"])
    one = ct.Lepton("shell", command="answer=$((6 * 7))", argtypes=[(int, ct.Lepton.OUTPUT)],
                    named_outputs=["answer"], display_name="answer")

    @ct.lattice
    def wf(**kwargs):
        return [versions("hi there", **kwargs), one()]

    result = ct.dispatch_sync(wf)(TOOL="gcc with spaces")
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == [("gcc with spaces", 12, 3, 4), 42]  # several outputs: a tuple
    node = result.get_node_result(0)
    assert node["stdout"] == "said hi there\n"  # the command's own output, markers removed
    assert result.get_node_result(3)["node_name"] == "answer"


def test_bash_library_function_and_the_bash_decorator(cov_home: Path, tmp_path: Path) -> None:
    library = tmp_path / "lib.sh"
    library.write_text('greet() { greeting="hello $1 and $2"; }\n')
    greet = ct.Lepton("bash", library_name=str(library), function_name="greet",
                      argtypes=[(str, ct.Lepton.OUTPUT)], named_outputs=["greeting"])
    marker = tmp_path / "made-by-bash"

    @ct.leptons.bash
    def touch(path):
        return f"touch {path} && echo touched"

    @ct.lattice
    def wf():
        return [greet("a b", "c"), touch(str(marker))]

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == ["hello a b and c", None]
    assert marker.exists()
    assert result.get_node_result(3)["stdout"] == "touched\n"


def test_failing_bash_lepton_fails_with_its_stderr(cov_home: Path) -> None:
    bad = ct.Lepton("bash", command="echo broken pipe >&2; exit 3")

    @ct.lattice
    def wf():
        return bad()

    result = ct.dispatch_sync(wf)()
    assert result.status == ct.status.FAILED
    stderr = result.get_node_result(0)["stderr"]
    assert "bash lepton exited with code 3: broken pipe" in stderr


def test_bad_lepton_arguments_and_c_leptons_raise_clear_errors() -> None:
    with pytest.raises(NotImplementedError, match="not supported by cov"):
        ct.Lepton("C", library_name="libtest.so", function_name="f")
    with pytest.raises(ValueError, match="library_name and command"):
        ct.Lepton("bash", command="ls", library_name="x.sh", function_name="f")
    with pytest.raises(ValueError, match="Must specify function_name"):
        ct.Lepton("python", library_name="math")
    with pytest.raises(ValueError, match="retval_keyword"):
        ct.Lepton("python", library_name="math", function_name="sqrt",
                  call_before=ct.DepsCall(print, retval_keyword="x"))


def test_covalent_module_paths_and_the_bash_decorator_with_deps_and_files(
        cov_home: Path, tmp_path: Path) -> None:
    """As Covalent's functional lepton_test: ``ct.leptons.bash`` as a decorator with hooks and a
    transfer, and called on a function; the lattice returns nothing."""
    from covalent_cli._file_transfer.enums import Order
    from covalent_cli._file_transfer.strategies.rsync_strategy import Rsync
    from covalent_cli._workflow.lepton import Lepton

    assert Lepton is ct.Lepton and Rsync is ct.fs_strategies.Rsync and Order is ct.fs.Order
    source, dest, dest2 = tmp_path / "src.txt", tmp_path / "dest.txt", tmp_path / "dest2.txt"
    echo, echo2 = tmp_path / "debug.txt", tmp_path / "debug2.txt"
    source.touch()
    hook = ct.DepsCall(lambda: None)

    @ct.leptons.bash(executor="local", display_name="debug", call_before=hook, call_after=hook,
                     deps_bash=ct.DepsBash(["true"]),
                     files=[ct.fs.FileTransfer(str(source), str(dest), order=Order.BEFORE)])
    def task(x):
        return f"echo {x} > {echo}"

    def task2(x):
        return f"echo {x} > {echo2}"

    @ct.lattice
    def workflow():
        task(5)
        ct.leptons.bash(task2, files=[ct.fs.FileTransfer(str(source), str(dest2),
                                                          order=Order.AFTER)])(3)

    result = ct.dispatch_sync(workflow)()
    assert result.status == ct.status.COMPLETED, result.error
    assert echo.read_text() == "5\n" and echo2.read_text() == "3\n"
    assert dest.exists() and dest2.exists()
    assert result.get_node_result(0)["node_name"] == "debug"
