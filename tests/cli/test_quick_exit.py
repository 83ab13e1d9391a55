"""`cov dispatch` ends without the interpreter's teardown of cov's modules
(covalent_cli/cli/quick_exit.py), and loses nothing of the user's code: its atexit functions
run, the modules its script imported are torn down (a file one left open is flushed), its
threads are waited for, and the exit code and output are the command's."""
from __future__ import annotations

import textwrap


def _script(tmp_path, body: str) -> str:
    (tmp_path / "helper_mod.py").write_text(textwrap.dedent(f"""
        log = open({str(tmp_path / "helper.txt")!r}, "w")  # left open: flushed at exit
        log.write("from the helper")

        class Loud:
            def __del__(self):
                with open({str(tmp_path / "finalized.txt")!r}, "w") as f:
                    f.write("finalized")

        keep = Loud()
    """))
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent("""
        import atexit
        import covalent as ct
        import helper_mod

        @ct.electron
        def one():
            return 1

        @ct.lattice
        def flow():
            return one()
    """) + textwrap.dedent(body))
    return str(path)


def test_what_the_script_imported_is_torn_down_and_its_atexit_functions_run(
        run_cov, cov_home, tmp_path):
    script = _script(tmp_path, f"""
        atexit.register(lambda: open({str(tmp_path / "atexit.txt")!r}, "w").write("ran"))
    """)
    proc = run_cov("dispatch", script, "--wait", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "1"
    assert (tmp_path / "helper.txt").read_text() == "from the helper"
    assert (tmp_path / "finalized.txt").read_text() == "finalized"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_a_thread_the_script_started_is_waited_for(run_cov, cov_home, tmp_path):
    script = _script(tmp_path, f"""
        import threading

        def late():
            done = threading.Event()
            done.wait(0.5)  # still running when the dispatch is over
            open({str(tmp_path / "thread.txt")!r}, "w").write("finished")

        threading.Thread(target=late).start()
    """)
    proc = run_cov("dispatch", script, "--wait", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "thread.txt").read_text() == "finished"


def test_a_failed_run_keeps_its_exit_code_and_its_error(run_cov, cov_home, tmp_path):
    script = _script(tmp_path, """
        @ct.electron
        def boom():
            raise ValueError("no good")

        @ct.lattice
        def bad():
            return boom()
    """)
    proc = run_cov("dispatch", script, "bad", "--wait")
    assert proc.returncode == 3, proc.stderr
    assert ": FAILED\nThe following tasks failed:\n0: boom" in proc.stderr
    assert (tmp_path / "helper.txt").read_text() == "from the helper"
