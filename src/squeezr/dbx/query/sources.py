"""Which logs a query reads: experiments chosen exactly as ``dbx ls`` chooses them.

Selection is delegated to ``squeezr.dbx.select`` so that ``dbx ls X`` and ``dbx query Q X``
always agree on the experiments, and to the store for opening experiments by reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from squeezr.dbx.query.engine import Source


def experiment_sources(
    repo: Any,
    experiments: Iterable[Any] | None,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
) -> tuple[Any, list[Source]]:
    """The repository (None if not needed) and one Source per chosen experiment, in order."""
    from squeezr import dbx
    from squeezr.dbx.select import select_experiments

    handles = list(experiments) if experiments is not None else None
    if handles is not None and repo is None and not any(isinstance(h, str) for h in handles):
        return None, [Source(experiment=handle) for handle in handles]
    repository = repo if isinstance(repo, dbx.Repository) else dbx.Repository.find(repo)
    if handles is None:
        handles = list(
            select_experiments(
                repository,
                prefix=prefix,
                kind=kind,
                since=since,
                where=where,
                sort=None,
                limit=None,
            )
        )
    else:
        handles = [dbx.open(h, repo=repository) if isinstance(h, str) else h for h in handles]
    return repository, [Source(experiment=handle) for handle in handles]


def cache_dir(repository: Any) -> Path | None:
    """Where parsed-log caches live: ``<repo>/.dbx/cache/query`` (derived, safe to delete)."""
    if repository is None:
        return None
    return Path(repository.path) / ".dbx" / "cache" / "query"
