"""A small HTTP client for the dbx server, on the standard library (dbx stays light).

``Client(url)`` sends ``$DBX_TOKEN`` (or ``token=``) as a bearer token. A server that
answers with an error becomes the :class:`~squeezr.dbx.errors.UserError` it described (same
message and status); one that cannot be reached becomes :class:`Unreachable`, which the
streaming shipper and sync treat as "try again later".
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import NotFound, UserError

__all__ = ["API", "Client", "Unreachable", "is_url"]

API = "/api/v1"


def is_url(value: Any) -> bool:
    """Whether ``value`` names a server (``http://`` or ``https://``) rather than a folder."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


class Unreachable(UserError):
    """The server did not answer (refused, reset, timed out); nothing is known to be stored."""

    status = 503


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        if not is_url(url):
            raise UserError(f"{url!r} is not a server URL; use http://host:port")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("DBX_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """Send one request to ``API + path``; the decoded JSON answer (None if empty).
        ``body`` is sent as JSON; ``data`` as it is, labelled ``content_type``."""
        with self.open(
            method, path, body, params=params, data=data, content_type=content_type
        ) as response:
            raw = response.read()
        return jsonx.loads(raw) if raw else None

    def download(self, path: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The body of ``GET API + path`` in chunks."""
        with self.open("GET", path) as response:
            while piece := response.read(chunk):
                yield piece

    def open(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """The open HTTP response of one request (a context manager; read it as a stream)."""
        url = self.url + API + urllib.parse.quote(path, safe="/-_.~")
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            if query:
                url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = jsonx.encode(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise _error(exc, method, url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach the dbx server {self.url}: {reason}") from None


def _error(exc: urllib.error.HTTPError, method: str, url: str) -> UserError:
    """The server's error answer as the UserError it describes."""
    try:
        message = json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError, OSError):
        message = f"{method} {url} failed with HTTP {exc.code} {exc.reason}"
    if exc.code == 404:
        return NotFound(message)
    if exc.code >= 500:
        return Unreachable(f"the dbx server failed ({exc.code}): {message}")
    error = UserError(message)
    error.status = exc.code
    return error
