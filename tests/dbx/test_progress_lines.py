"""Progress bars write plain lines, never carriage returns, where there is no terminal."""

from __future__ import annotations

import io

from squeezr.dbx.progress import LineProgress, progress_bar


def test_without_a_terminal_progress_is_plain_periodic_lines() -> None:
    out = io.StringIO()
    bar = progress_bar(range(3), desc="epochs", unit="epoch", file=out, every=0)
    assert isinstance(bar, LineProgress)
    assert list(bar) == [0, 1, 2]
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split(" [")[0] for line in lines] == [
        "epochs: 1/3 epoch",
        "epochs: 2/3 epoch",
        "epochs: 3/3 epoch",
    ]


def test_lines_are_throttled_and_the_last_one_is_always_written() -> None:
    out = io.StringIO()
    with progress_bar(total=1000, desc="oracle", unit="image", file=out, every=3600) as bar:
        for _ in range(10):
            bar.update(100)
        bar.set_postfix(step=2, block=5)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("oracle: 1000/1000 image [") and line.endswith("] step=2, block=5")


def test_a_disabled_bar_writes_nothing() -> None:
    out = io.StringIO()
    with progress_bar(total=3, file=out, disable=True) as bar:
        bar.update(3)
    assert out.getvalue() == ""
