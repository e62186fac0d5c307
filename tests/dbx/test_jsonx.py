import json
import math
from pathlib import Path

import numpy as np
import pytest

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError


def _strict(text: str) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_non_finite_floats_round_trip_as_extended_json() -> None:
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": math.nan}}
    text = jsonx.encode(value)
    assert _strict(text)["a"] == {"$numberDouble": "NaN"}
    assert _strict(text)["b"][:2] == [{"$numberDouble": "Infinity"}, {"$numberDouble": "-Infinity"}]
    back = jsonx.loads(text)
    assert math.isnan(back["a"]) and math.isnan(back["c"]["d"])
    assert back["b"] == [math.inf, -math.inf, 1.5]


def test_plain_objects_with_other_keys_are_left_alone() -> None:
    value = {"x": {"$numberDouble": "NaN", "other": 1}}
    assert jsonx.loads(jsonx.encode(value)) == value


def test_numpy_values_and_paths_become_json() -> None:
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": Path("x/y"), "d": np.float64("nan")}
    back = jsonx.loads(jsonx.encode(value))
    assert back["a"] == 0.5 and back["b"] == [0, 1, 2] and back["c"] == "x/y"
    assert math.isnan(back["d"])


def test_unstorable_objects_raise_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        jsonx.encode({"a": object()})


def test_read_json_names_the_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"a": 1', encoding="utf-8")
    with pytest.raises(UserError, match=r"results\.json is not valid JSON"):
        jsonx.read_json(path, "results file")
    with pytest.raises(UserError, match="missing"):
        jsonx.read_json(tmp_path / "nope.json")


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log-1.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = '{"name":"a","id":"1-1","ts":1.0,"run":1,"data":{"x":{"$numberDouble":"NaN"}}}\n'
GOOD2 = '{"name":"b","id":"1-2","ts":2.0,"run":1,"data":{}}\n'


def test_iter_log_reads_events(tmp_path: Path) -> None:
    events = list(jsonx.iter_log(_log(tmp_path, GOOD + "\n" + GOOD2)))
    assert [e["name"] for e in events] == ["a", "b"]
    assert math.isnan(events[0]["data"]["x"])


def test_iter_log_skips_a_torn_last_line_with_a_warning(tmp_path: Path) -> None:
    path = _log(tmp_path, GOOD + GOOD2 + '{"name":"c","id":"1-3","ts":3.0,"ru')
    with pytest.warns(UserWarning, match="torn last line 3"):
        events = list(jsonx.iter_log(path))
    assert [e["id"] for e in events] == ["1-1", "1-2"]


def test_iter_log_skips_a_corrupt_final_line_with_a_warning(tmp_path: Path) -> None:
    path = _log(tmp_path, GOOD + '{"name":"c", garbage\n')
    with pytest.warns(UserWarning, match="corrupt last line 2"):
        assert [e["id"] for e in jsonx.iter_log(path)] == ["1-1"]


def test_iter_log_raises_on_corruption_before_the_last_line(tmp_path: Path) -> None:
    path = _log(tmp_path, GOOD + "not json\n" + GOOD2)
    with pytest.raises(UserError, match=r"log-1.jsonl line 2 is corrupt"):
        list(jsonx.iter_log(path))
    path = _log(tmp_path, GOOD + "[1, 2]\n" + GOOD2)
    with pytest.raises(UserError, match="line 2"):
        list(jsonx.iter_log(path))


def test_loads_bulk_gives_what_loads_gives() -> None:
    """orjson parses a batch only where it gives the same values: the NaN marker, integers
    beyond 64 bits, NaN tokens and infinities that orjson refuses all go to ``loads``."""
    texts = [
        b'[{"a": 1.5, "b": "\\u00e9", "c": [1, {"d": null}]}]',
        b'[{"x": {"$numberDouble": "NaN"}}]',
        b"[123456789012345678901234567890, 1]",
        b"[1e999]",
    ]
    for text in texts:
        assert repr(jsonx.loads_bulk(text)) == repr(jsonx.loads(text))
    with pytest.raises(ValueError):
        jsonx.loads_bulk(b"[1,")
