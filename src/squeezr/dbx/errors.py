"""The exception types that CLIs turn into a one-line message instead of a traceback.

They live in dbx, the bottom layer, so that dbx could ship as its own torch-free distribution:
``squeezr`` imports them from here, and nothing in dbx imports the rest of ``squeezr``.
Each carries the HTTP status a server answers with (``status``), so one handler can render
any of them.
"""


class UserError(Exception):
    """A problem with the user's input or environment (bad config, missing file, bad syntax).

    The message must name the problem and say what to do; command-line entry points print
    it as a single line and exit with status 2.
    """

    status = 400


class NotFound(UserError):
    """A named thing (experiment, run, attachment, path) does not exist."""

    status = 404


class Ambiguous(UserError):
    """A reference matches several things and the caller asked for exactly one."""

    status = 409


class DbxWarning(UserWarning):
    """Something a user should know that does not stop the command (a torn last log line, a
    damaged experiment skipped by a listing). CLIs print it as one line,
    ``prog: warning: ...`` (:func:`squeezr.dbx.clikit.run`); ``--strict`` makes it an error."""
