"""One redaction rule for everything a run records about its environment: the command line,
the environment variables and the git remote.

A value is hidden (replaced by ``<redacted>``) when

* its *name* looks secret (:func:`is_secret_name`): an environment variable such as
  ``HF_TOKEN``, ``MYSQL_PWD``, ``GITHUB_TOKENS``, ``JWT``; a command-line option such as
  ``--api-key X``, ``--password=X``, ``--password -x...`` (a value may start with ``-``);
  a ``key=value`` argument such as Hydra's ``db.password=x`` or ``+db.password=x``; a
  ``Key=value`` pair inside a value such as an Azure connection string's ``AccountKey=...``
  or a URL query's ``?token=...``;
* or its *text* looks like a credential wherever it appears (:func:`redact_text`): the
  user-info of a URL (``postgres://user:pw@host`` keeps the user and hides the password;
  ``https://token@host`` hides the token), ``user:pw@host`` in an ssh remote, a JSON Web
  Token, and the well-known token shapes of GitHub, Hugging Face, OpenAI, Slack and AWS.

Redaction errs on the side of hiding: a recorded command that needs a secret back says so
(``dbx cmd`` asks for it as a shell variable).
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "is_secret_name", "redact_argv", "redact_env", "redact_text"]

REDACTED = "<redacted>"
# A name is split into words at '_', '-', '.' and camelCase humps, lowercased:
# "HF_TOKEN" -> hf, token; "AccountKey" -> account, key; "db.password" -> db, password.
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[_\-.+~]+")
_SECRET_WORDS = {"key", "auth", "pass", "pwd", "apikey", "privkey", "jwt", "sig", "dsn"}
_SECRET_ENDINGS = (
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "credential",
    "credentials",
)
# A last word saying the value only locates or names a secret: HF_TOKEN_PATH names a file,
# SharedAccessKeyName a key, AWS_ACCESS_KEY_ID an identity (its value's shape is still checked).
_LOCATOR_WORDS = {"path", "file", "dir", "sock", "socket", "name", "id", "user", "username"}
_NOT_SECRET = {"pwd", "oldpwd"}  # the shell's working folders, not passwords

# scheme://user:password@host -> keep user; scheme://token@host -> hide it all (ssh://git@ is a
# login, kept). user:password@host without a scheme (an scp-style ssh remote): hide password.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/@\s:]*)(:[^/@\s]*)?@")
_SCP_PASSWORD = re.compile(r"(?<![/\w.\-])([\w.\-]+):([^/@\s:]+)@(?=[\w.\-]+[:/])")
# Key=value inside a value: connection strings (;), URL queries (& ?), option lists (, space)
_PAIR = re.compile(r"(?<![\w.\-])([A-Za-z][\w.\-]*)=([^;&,\s]+)")
_TOKEN_SHAPES = re.compile(
    r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*"  # JSON Web Token
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,})"  # GitHub
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|\bsk-[A-Za-z0-9_\-]{20,}"  # OpenAI-style
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
)


def is_secret_name(name: str) -> bool:
    """Whether a variable, option or key name looks like it holds a secret.

    The name is split into words (see above). It is secret when a word is KEY, AUTH, PASS,
    PWD, APIKEY, PRIVKEY, JWT, SIG or DSN, or ends in TOKEN(S), SECRET(S), PASSWORD(S),
    PASSWD, PASSPHRASE or CREDENTIAL(S) (``PGPASSWORD``), unless its last word says it only
    locates or names one (PATH, FILE, DIR, SOCK, SOCKET, NAME, ID, USER, USERNAME:
    ``HF_TOKEN_PATH``, ``SSH_AUTH_SOCK``, ``SharedAccessKeyName``). Words,
    not substrings, so ``MONKEY`` and ``TOKENIZERS_PARALLELISM`` are kept; ``PWD`` and
    ``OLDPWD`` are the shell's working folders.
    """
    if name.lower() in _NOT_SECRET:
        return False
    words = [word for word in _WORD_SPLIT.split(_CAMEL.sub("_", name).lower()) if word]
    if not words or words[-1] in _LOCATOR_WORDS:
        return False
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words)


def redact_text(text: str) -> str:
    """``text`` with every credential its *form* gives away hidden: URL user-info, scp-style
    ``user:pw@host``, secret ``Key=value`` pairs and known token shapes (see above)."""
    text = _URL_USERINFO.sub(_url_userinfo, text)
    text = _SCP_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    text = _PAIR.sub(_pair, text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _url_userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match.group(1), match.group(2), match.group(3)
    if password is not None:
        return f"{scheme}{user}:{REDACTED}@" if user else f"{scheme}{REDACTED}@"
    if scheme.lower().rstrip("/:").endswith("ssh") and user.isidentifier():
        return match.group(0)  # ssh://git@host: a login name, not a secret
    return f"{scheme}{REDACTED}@"


def _pair(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    if value == REDACTED or not is_secret_name(key):
        return match.group(0)
    return f"{key}={REDACTED}"


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """The environment, sorted by name, with secret-named variables' values replaced by
    ``<redacted>`` and credentials removed from every other value (``DATABASE_URL``,
    ``HTTPS_PROXY``, ``PIP_INDEX_URL``, an Azure connection string...)."""
    return {
        name: REDACTED if is_secret_name(name) else redact_text(value)
        for name, value in sorted(env.items())
    }


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with secrets hidden: ``--api-key=X`` -> ``--api-key=<redacted>``; in
    ``--token X`` and ``--password -x`` the value (the next argument, unless it is another
    long option); ``db.password=x`` -> ``db.password=<redacted>``; and credentials in any
    argument's text (:func:`redact_text`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("--"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if arg.startswith("--") and len(arg) > 2:
            option, sep, _ = arg.partition("=")
            if is_secret_name(option[2:]):
                if sep:
                    out.append(f"{option}={REDACTED}")
                    continue
                hide_next = True
        elif not arg.startswith("-"):
            key, sep, _ = arg.partition("=")
            if sep and key and " " not in key and is_secret_name(key):
                out.append(f"{key}={REDACTED}")
                continue
        out.append(redact_text(arg))
    return out
