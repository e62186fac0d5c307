"""The one exception type that CLIs turn into a one-line message instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment (bad config, missing file, bad syntax).

    The message must name the problem and say what to do; command-line entry points print
    it as a single line and exit with status 2.
    """
