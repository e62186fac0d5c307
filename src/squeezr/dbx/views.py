"""How code sees an experiment's params and results: dot-notation mappings.

``params`` never change after creation, so they are a frozen ``dict`` (JSON-serialisable as
is) that also answers ``p["optimizer.lr"]`` and ``p.optimizer.lr``. ``results`` change while
other processes may be writing them, so every write is a locked read-modify-write of
``results.json`` and every read sees the file's current content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, NoReturn

from squeezr.dbx import expr, jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write, locked

__all__ = ["Params", "Results", "check_keys", "flatten", "get_dotted", "set_dotted", "thaw"]


def check_keys(value: Any, where: str, path: str = "") -> None:
    """UserError if any key, at any depth, is not a non-empty string without a ``.``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or "." in key:
                under = f" (under {path!r})" if path else ""
                raise UserError(
                    f"{where} key {key!r}{under} is not allowed: keys must be non-empty strings "
                    "without '.' (dots address nested values); nest a mapping instead"
                )
            check_keys(item, where, f"{path}.{key}" if path else key)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_keys(item, where, path)


def get_dotted(data: Mapping[str, Any], key: str) -> Any:
    """``data["a"]["b"]`` for ``key == "a.b"`` (``"curve.0"`` indexes a list), read as
    :func:`squeezr.dbx.expr.dig` reads it, so ``results["a.b"]`` and
    ``exp.value("results.a.b")`` always agree; KeyError naming ``key`` if absent."""
    value = expr.dig(data, key) if isinstance(key, str) and key else expr.MISSING
    if value is expr.MISSING:
        raise KeyError(key)
    return value


def set_dotted(data: dict[str, Any], key: str, value: Any, what: str = "result") -> None:
    """Set ``data["a"]["b"] = value`` for ``key == "a.b"``, creating missing intermediate
    levels. A non-mapping value in the way is a UserError, never silently replaced: after
    ``results["acc"] = 0.9``, ``results["acc.top1"] = 1`` would otherwise delete ``acc``.
    ``what`` names the values in error messages (``result``, ``event field``)."""
    parts = key.split(".") if isinstance(key, str) else [""]
    if not all(parts):
        raise UserError(f"{what} key {key!r} is not allowed; use names like 'acc' or 'eval.acc'")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise UserError(
                f"cannot set {what} {key!r}: {where!r} already holds {child!r}, not an object; "
                f"remove {where!r} first or choose another key"
            )
        node = child
    node[parts[-1]] = value


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``
    (``{"p.a.b": 1}`` with ``prefix="p"``). Lists and empty mappings are leaves; this is how
    tables, ``diff`` and ``like`` name params and results."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, name))
        else:
            flat[name] = item
    return flat


def thaw(value: Any) -> Any:
    """A plain, mutable copy of params or results: mappings become dicts, sequences lists."""
    if isinstance(value, Mapping):
        return {str(key): thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return Params(value)
    if isinstance(value, list):
        return [_freeze(item) for item in value]
    return value


class Params(dict):
    """A read-only dict of params: ``p["a.b"]``, ``p.a.b`` and ``p["a"]["b"]`` all work."""

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        super().__init__((key, _freeze(value)) for key, value in dict(data).items())

    def __getitem__(self, key: str) -> Any:
        if isinstance(key, str) and "." in key and not dict.__contains__(self, key):
            return get_dotted(self, key)
        return dict.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, name: str) -> Any:
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise AttributeError(f"no param {name!r}") from None

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UserError("params are immutable after creation; store changing values in results")

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _readonly
    clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Params, (dict(self),))


class Results(MutableMapping[str, Any]):
    """The live ``results.json`` of one experiment.

    Reads re-read the file when it changed (checked by ``stat``); each write (``[k] = v``,
    ``update``, ``del``) is one atomic, locked read-modify-write, so concurrent writers in
    other processes lose nothing. Keys may be dotted paths (``"a.b"``) into nested objects.
    """

    def __init__(self, path: Path | str, lock_path: Path | str) -> None:
        self._path = path
        self._lock = lock_path
        self._stamp: tuple[int, int, int] | None = None
        self._cache: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        """The cached results, re-read when the file's inode, mtime or size changed."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._cache, self._stamp = self._read(), stamp
        return self._cache

    def _read(self) -> dict[str, Any]:
        """A fresh parse of the file ({} if there is none), shared with nobody."""
        try:
            data = jsonx.read_json(self._path, "results file")
        except jsonx.FileError as exc:
            if exc.missing:
                return {}
            raise
        if not isinstance(data, dict):
            raise UserError(f"results file {self._path} does not hold a JSON object; repair it")
        return data

    def tree(self) -> dict[str, Any]:
        """The current results as nested plain dicts, re-read only when the file changed.
        Shared with later reads, so treat it as read-only (write through this object)."""
        return self._load()

    def modify(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change(results_dict)`` as one locked read-modify-write; a result that
        cannot be stored (bad key, a value JSON cannot hold, a full disk) is an error and
        changes nothing, neither the file nor what reads return. ``change`` works on a
        fresh read of the file, never on the cache that reads share."""
        with locked(self._lock):
            data = self._read()
            change(data)
            try:
                text = jsonx.encode(data, indent=2)
            except (TypeError, ValueError) as exc:  # ValueError: a cycle, a huge int, TooDeep
                raise UserError(f"cannot store results in {self._path}: {exc}") from None
            check_keys(data, "result")  # after encoding, which bounds the nesting
            atomic_write(self._path, text + "\n")
            self._stamp = None

    def __getitem__(self, key: str) -> Any:
        return get_dotted(self._load(), key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.modify(lambda data: set_dotted(data, key, value))

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        parent_key, _, last = key.rpartition(".")

        def remove(data: dict[str, Any]) -> None:
            parent = expr.dig(data, parent_key)
            if isinstance(parent, list):
                raise UserError(
                    f"cannot delete result {key!r}: it is an item of a list; "
                    f"assign the whole list {parent_key!r} instead"
                )
            if isinstance(parent, dict):  # else another process deleted it meanwhile
                parent.pop(last, None)

        self.modify(remove)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        items = dict(other, **kwargs)

        def merge(data: dict[str, Any]) -> None:
            for key, value in items.items():
                set_dotted(data, key, value)

        self.modify(merge)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._load()))

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"Results({self._load()!r})"
