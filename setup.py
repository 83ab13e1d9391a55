"""Only what pyproject.toml cannot say: install ``cov-covalent.pth`` into site-packages.

That file makes ``import covalent`` find cov's SDK in every Python program of the environment
where no real Covalent is installed (see ``_cov_import_hook.py``). A wheel puts files at its
root into site-packages, so the regular build copies the file into the build directory; an
editable build (PEP 660) writes no package files, so it is written into the editable wheel's
root directly.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "cov-covalent.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    """build_py that also ships ``cov-covalent.pth`` (regular and editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # setuptools' editable_wheel points install_lib at the unpacked wheel it zips up.
            target = self.distribution.get_command_obj("install").install_lib
        else:
            target = self.build_lib
        if target:
            self.copy_file(os.path.join(HERE, PTH), os.path.join(target, PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH))
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth})
