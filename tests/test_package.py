"""Packaging contracts: dbx imports without torch (and, for its command line, without pandas,
numpy or matplotlib, which cost a third of a second and more to import); matplotlib is used
only inside ``squeezr.dbx.report``; both CLIs answer --help."""

import subprocess
import sys


def test_dbx_imports_without_torch_pandas_numpy_or_matplotlib():
    code = (
        "import sys, squeezr.dbx, squeezr.dbx.cli; "
        "import squeezr.dbx.cli as c; [__import__('squeezr.dbx.cli.' + m) for m in c.COMMANDS]; "
        "heavy = ('torch', 'pandas', 'numpy', 'matplotlib'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dbx_ls_runs_without_pandas(tmp_path):
    code = (
        "import sys; from squeezr import dbx; from squeezr.dbx.cli import main; "
        "dbx.create('a', params={'x': 1}, repo=sys.argv[1]).close(); "
        "assert main(['ls', '--repo', sys.argv[1], '--where', 'params.x == 1']) == 0; "
        "assert main(['ls', '--repo', sys.argv[1], '--json']) == 0; "
        "assert main(['show', 'a', '--repo', sys.argv[1]]) == 0; "
        "sys.exit(1 if 'pandas' in sys.modules else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_help():
    for prog in ("squeezr", "dbx"):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from squeezr{'.dbx' if prog == 'dbx' else ''}.cli import main; main()",
                "--help",
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout


def test_dbx_imports_nothing_from_the_rest_of_squeezr():
    """dbx is the bottom layer: importing all of it loads no ``squeezr`` module outside
    ``squeezr.dbx`` (so it could ship as its own distribution)."""
    code = (
        "import sys, pkgutil, importlib, squeezr.dbx as d; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(d.__path__, 'squeezr.dbx.')]; "
        "bad = [m for m in sys.modules if m.startswith('squeezr.') and not m.startswith('squeezr.dbx')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_matplotlib_is_imported_only_inside_dbx_report():
    """Plotting lives in one place: no other module imports matplotlib, and ``dbx.plot`` is
    loaded only when first used."""
    import re
    from pathlib import Path

    imports = re.compile(r"^\s*(import|from)\s+matplotlib\b", re.MULTILINE)
    src = Path(__file__).resolve().parents[1] / "src" / "squeezr"
    report = src / "dbx" / "report"
    users = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if report not in path.parents and imports.search(path.read_text())
    ]
    assert users == []
    code = (
        "import sys; from squeezr import dbx; assert 'matplotlib' not in sys.modules; "
        "plot = dbx.plot; sys.exit(0 if 'matplotlib' in sys.modules else 1)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_carries_the_licence(tmp_path):
    """pyproject says MIT; the wheel built from this tree ships the LICENSE text."""
    import zipfile
    from pathlib import Path

    from hatchling.builders.wheel import WheelBuilder

    root = Path(__file__).resolve().parents[1]
    assert "MIT License" in (root / "LICENSE").read_text()
    (wheel,) = WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"])
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert "squeezr/dbx/refs.py" in names
