"""Packaging promises: a light import, the library inside an installed package, the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import odenet


def _python(code: str, cwd) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd, timeout=120
    ).stdout


def test_import_odenet_does_not_import_torch(tmp_path):
    out = _python(
        "import sys, json, odenet\n"
        "s = odenet.load('leapfrog'); odenet.parse(odenet.format_scheme(s))\n"
        "print(json.dumps(['torch' in sys.modules, 'matplotlib' in sys.modules]))",
        cwd=tmp_path,
    )
    assert json.loads(out) == [False, False]


def test_scheme_commands_do_not_import_torch(tmp_path):
    """The parser of every command (defaults included) and ``list``/``show``/``analyze`` load no torch."""
    out = _python(
        "import sys, json, contextlib, io\n"
        "from odenet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['list']), main(['show', 'leapfrog']), main(['analyze', 'euler'])]\n"
        "print(json.dumps([codes, 'torch' in sys.modules]))",
        cwd=tmp_path,
    )
    assert json.loads(out) == [[0, 0, 0], False]


def test_library_is_found_from_any_working_directory(tmp_path):
    out = _python("import odenet; print(len(odenet.library_names()))", cwd=tmp_path)
    assert int(out) == len(odenet.library_names())


def test_installed_package_carries_the_library(tmp_path):
    """With a non-editable install (the README's), the .scheme files live inside the package."""
    location = _python(
        "import odenet, pathlib; print(pathlib.Path(odenet.__file__).parent)", cwd=tmp_path
    ).strip()
    if "site-packages" not in location:
        pytest.skip("odenet is imported from a source tree, not from an installed package")
    folder = _python("import odenet.library as l; print(l.library_dir())", cwd=tmp_path).strip()
    assert folder.startswith(location) and folder.endswith("_schemes")


def test_console_script_is_installed():
    if shutil.which("odenet") is None:
        pytest.skip("the odenet console script is not on PATH (package not installed)")
    result = subprocess.run(["odenet", "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"odenet {odenet.__version__}"
