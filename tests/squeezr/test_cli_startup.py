"""How the ``squeezr`` command line starts: ``squeezr --help`` and ``--version`` load no torch
(only the module of the command being run is imported), no command loads the analysis stack
(scipy, pandas) while parsing, and no ``--help`` text of either CLI shows reStructuredText."""

import argparse
import importlib
import subprocess
import sys

import pytest

from squeezr.cli import COMMANDS, SUMMARIES
from squeezr.cli import main as squeezr_main
from squeezr.dbx.cli import COMMANDS as DBX_COMMANDS
from squeezr.dbx.cli import main as dbx_main

CODE = """
import sys
from squeezr.cli import main
try:
    main([{argv}])
except SystemExit:
    pass
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{{modules}}})
print(heavy)
sys.exit(1 if heavy else 0)
"""


def _loads_none_of(argv: str, modules: str) -> None:
    code = CODE.format(argv=argv, modules=modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_squeezr_help_and_version_do_not_import_torch():
    for argv in ('"--help"', '"--version"'):
        _loads_none_of(argv, '"torch", "numpy", "scipy", "pandas"')


def test_the_squeezr_parser_loads_neither_scipy_nor_pandas():
    _loads_none_of('"prune", "--help"', '"scipy", "pandas"')


def test_the_listed_summaries_are_what_the_modules_register():
    for name in COMMANDS:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(f"squeezr.cli.{name}").register(sub)
        registered = {action.dest: action.help for action in sub._choices_actions}
        assert registered == SUMMARIES.get(name, registered), name


@pytest.mark.parametrize(
    ("main", "command"),
    [
        *((squeezr_main, c) for cs in SUMMARIES.values() for c in cs),
        *((dbx_main, c) for c in DBX_COMMANDS),
    ],
)
def test_help_text_has_no_rst_markup(main, command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    for markup in ("``", ":func:", ":class:", ":meth:", ":mod:", ":data:"):
        assert markup not in out, f"{command}: {markup}"
