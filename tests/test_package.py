"""Packaging contracts: dbx imports without torch; both CLIs answer --help."""

import subprocess
import sys


def test_dbx_imports_without_torch():
    code = (
        "import sys, squeezr.dbx, squeezr.dbx.cli; "
        "import squeezr.dbx.cli as c; [__import__('squeezr.dbx.cli.' + m) for m in c.COMMANDS]; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
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
