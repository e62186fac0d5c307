"""The ``squeezr`` command line starts without the analysis stack (scipy, pandas): every
command, ``--version`` included, builds the whole parser first, so what the subcommand
modules import at the top is paid by all of them."""

import subprocess
import sys

CODE = """
import sys
from squeezr.cli import main
try:
    main(["--version"])
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas"})
print(heavy)
sys.exit(1 if heavy else 0)
"""


def test_the_squeezr_parser_loads_neither_scipy_nor_pandas():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
