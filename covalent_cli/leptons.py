"""Leptons: tasks whose code is not a Python function of the script (``ct.Lepton``,
``ct.leptons.bash``).

A ``Lepton`` is an electron whose function is a small generated wrapper: it imports
``library_name`` and calls ``function_name`` (``language="python"``), or runs a bash command or
a function of a sourced bash file (``language="bash"``/``"shell"``), reading ``named_outputs``
back from the shell's variables, as Covalent does. The wrapper closes over plain values only
and imports what it needs inside, so it travels by value to a host that has no cov (SSH, Slurm).
C leptons (``language="C"``) are not supported by cov.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from covalent_cli.electron import Electron

_LANG_PY = ("Python", "python")
_LANG_SHELL = ("bash", "shell")
_LANG_C = ("C", "c")


class Lepton(Electron):
    """A task defined outside the script: a Python module's function or a bash command.

    ``argtypes``: ``(type, Lepton.INPUT|OUTPUT|INPUT_OUTPUT)`` pairs; for bash, the types of the
    ``named_outputs`` (the shell variables whose values the task returns: one value, or a tuple
    of several). Keyword arguments of a bash lepton are exported as environment variables and
    substituted into ``command`` with ``str.format``; positional ones are ``$1``, ``$2`` ...
    """

    INPUT = 0
    OUTPUT = 1
    INPUT_OUTPUT = 2
    receives_files = False  # as in Covalent, a lepton's transfers run without a `files` argument

    def __init__(self, language: str = "python", *, library_name: str = "",
                 function_name: str = "", argtypes: Optional[Sequence[Tuple[Any, int]]] = None,
                 command: Union[str, List[str], None] = "",
                 named_outputs: Optional[Sequence[str]] = None, display_name: str = "",
                 executor: Any = None, files: Any = None, deps_bash: Any = None,
                 deps_pip: Any = None, call_before: Any = None, call_after: Any = None) -> None:
        self.language = language
        self.library_name = library_name
        self.function_name = function_name
        # Types are kept by name: not every type object pickles.
        self.argtypes = [(t[0] if isinstance(t[0], str) else t[0].__name__, t[1])
                         for t in (argtypes or [])]
        self.command = " && ".join(command) if isinstance(command, list) else (command or "")
        self.named_outputs = list(named_outputs or [])
        self.display_name = display_name
        if language in _LANG_C:
            raise NotImplementedError(
                "Lepton(language='C') is not supported by cov; call the library with ctypes "
                "inside an @ct.electron, or wrap it in a bash Lepton")
        if language not in _LANG_PY + _LANG_SHELL:
            raise ValueError(f"Language '{language}' is not supported.")
        if language in _LANG_SHELL:
            if self.command and library_name:
                raise ValueError("Invalid argument combination: library_name and command. "
                                 "Use one or the other.")
            if not (self.command or library_name):
                raise ValueError("Specify either library_name or command using this language.")
        elif self.command:
            raise ValueError(f"Keyword argument 'command' incompatible with language {language}.")
        elif self.named_outputs:
            raise ValueError(f"Keyword argument 'named_outputs' incompatible with language "
                             f"{language}.")
        if library_name and not function_name:
            raise ValueError("Must specify function_name when calling a library.")
        for calls in (call_before, call_after):
            for call in calls if isinstance(calls, (list, tuple)) else [calls]:
                if getattr(call, "retval_keyword", ""):
                    raise ValueError("DepsCall retval_keyword(s) are not currently supported for "
                                     "Leptons, please remove the retval_keyword arg from DepsCall")
        super().__init__(self._wrapper(), executor=executor, deps_bash=deps_bash,
                         deps_pip=deps_pip, call_before=call_before, call_after=call_after,
                         files=files)

    def _wrapper(self) -> Callable[..., Any]:
        if self.language in _LANG_PY:
            wrapper = _python_wrapper(self.library_name, self.function_name)
        else:
            outputs = [t for t in self.argtypes if t[1] in (self.OUTPUT, self.INPUT_OUTPUT)]
            wrapper = _shell_wrapper(self.command, self.library_name, self.function_name,
                                     self.named_outputs, [t[0] for t in outputs],
                                     sum(1 for t in self.argtypes if t[1] == self.INPUT_OUTPUT))
        # Covalent's names: the node is called after display_name, function_name or command
        wrapper.__name__ = self.display_name or self.function_name or self.command
        wrapper.__qualname__ = f"Lepton.{self.display_name}" if self.display_name else \
            f"Lepton.{self.library_name.split('.')[0]}.{self.function_name}"
        wrapper.__module__ = "covalent_cli.leptons.console" if self.command else \
            f"covalent_cli.leptons.{self.library_name.split('.')[0]}"
        wrapper.__doc__ = f"Lepton interface for {self.language} function " \
                          f"'{self.function_name}'." if self.function_name else ""
        return wrapper

    def __repr__(self) -> str:
        return f"Lepton({self.language!r}, {self.function.__name__!r})"


def _python_wrapper(library_name: str, function_name: str) -> Callable[..., Any]:
    def python_wrapper(*args: Any, **kwargs: Any) -> Any:
        """Call a function of another Python module."""
        import importlib

        module = importlib.import_module(library_name)
        try:
            func = getattr(module, function_name)
        except AttributeError:
            raise AttributeError(f"Could not find the function '{function_name}' in "
                                 f"'{library_name}'.") from None
        return func(*args, **kwargs)

    return python_wrapper


def _shell_wrapper(command: str, library_name: str, function_name: str,
                   named_outputs: List[str], output_types: List[str],
                   input_outputs: int) -> Callable[..., Any]:
    def shell_wrapper(*args: Any, **kwargs: Any) -> Any:
        """Run a bash command (or a function of a sourced bash file); return its named
        outputs, read from the shell's variables after it ran."""
        import builtins
        import shlex
        import subprocess
        import sys

        if len(output_types) != len(named_outputs):
            raise ValueError(f"Expecting {len(output_types)} named outputs (one per OUTPUT or "
                             f"INPUT_OUTPUT argtype), got {len(named_outputs)}.")
        if input_outputs != len(kwargs):
            raise ValueError(f"Expecting {input_outputs} keyword arguments.")
        exports = "".join(f"export {k}={shlex.quote(str(v))} && " for k, v in kwargs.items())
        marker = "COVALENT-LEPTON-OUTPUT-"
        echo = "".join(f" && echo {marker}{name}: ${name}" for name in named_outputs)
        if command:
            line = f"{exports} {command.format(**kwargs)} {echo}"
            argv = ["/bin/bash", "-c", line, "_", *[str(a) for a in args]]
        else:
            quoted = " ".join(shlex.quote(str(a)) for a in args)
            line = (f"{exports} source {shlex.quote(library_name)} && {function_name} "
                    f"{quoted} {echo}")
            argv = ["/bin/bash", "-c", line]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if err:  # the command's own output stays visible in the task's logs
            sys.stderr.write(err)
        values: dict = {}
        for text in out.splitlines():
            if text.startswith(marker) and ": " in text:
                name, _, value = text[len(marker):].partition(": ")
                values.setdefault(name, value)
            else:
                sys.stdout.write(text + "\n")
        if proc.returncode != 0:
            raise RuntimeError(f"bash lepton exited with code {proc.returncode}: "
                               f"{err.strip()[-2000:] or line.strip()}")
        results = []
        for name, type_name in zip(named_outputs, output_types):
            cast = getattr(builtins, type_name, str)
            results.append(cast(values.get(name, "")))
        if not results:
            return None
        return tuple(results) if len(results) > 1 else results[0]

    return shell_wrapper


def bash(_func: Optional[Callable[..., str]] = None, *, display_name: str = "",
         executor: Any = None, files: Any = None, deps_bash: Any = None, deps_pip: Any = None,
         call_before: Any = None, call_after: Any = None) -> Any:
    """``@ct.leptons.bash``: a Python function that returns a bash command becomes a task
    running that command (the function runs when called, in the lattice body; the command
    runs as the task, its stdout and stderr being the task's)."""

    def decorate(func: Callable[..., str]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task = Lepton("bash", command=func(*args, **kwargs),
                          display_name=display_name, executor=executor,
                          files=files, deps_bash=deps_bash, deps_pip=deps_pip,
                          call_before=call_before, call_after=call_after)
            return task()

        return wrapper

    return decorate(_func) if _func is not None else decorate


__all__ = ["Lepton", "bash"]
