"""The one redaction rule, table-driven: every form a secret takes in a command line, an
environment or a git remote, and the look-alikes that must be kept."""

from __future__ import annotations

import pytest

from squeezr.dbx.redact import REDACTED, is_secret_name, redact_argv, redact_env, redact_text

R = REDACTED

ARGV = [
    (["--api-key", "abc"], ["--api-key", R]),
    (["--password=hunter2"], [f"--password={R}"]),
    (["--password", "-xYz9"], ["--password", R]),  # a value may start with '-'
    (["--hf_token", "x", "data"], ["--hf_token", R, "data"]),
    (["--db-passwd", "p"], ["--db-passwd", R]),
    (["--client-secret=s"], [f"--client-secret={R}"]),
    (["db.password=x"], [f"db.password={R}"]),  # Hydra
    (["+db.password=x"], [f"+db.password={R}"]),
    (["++trainer.logger.api_key=k"], [f"++trainer.logger.api_key={R}"]),
    (["--url", "https://bob:pw@host/x"], ["--url", f"https://bob:{R}@host/x"]),
    (["--token-file", "t.txt"], ["--token-file", "t.txt"]),  # names a file
    (["--monkey", "x"], ["--monkey", "x"]),
    (["--secret", "--verbose"], ["--secret", "--verbose"]),  # the next long option is kept
    (["-k", "key", "token"], ["-k", "key", "token"]),
    (["lr=0.1", "model.depth=110"], ["lr=0.1", "model.depth=110"]),
]

ENV = [
    ("HF_TOKEN", "t", R),
    ("GITHUB_TOKENS", "a,b", R),
    ("VAULT_SECRETS", "s", R),
    ("MYSQL_PWD", "p", R),
    ("JWT", "e", R),
    ("PGPASSWORD", "p", R),
    ("AWS_SECRET_ACCESS_KEY", "s", R),
    ("GOOGLE_APPLICATION_CREDENTIALS", "c", R),
    ("SSH_KEY_PASSPHRASE", "p", R),
    ("DATABASE_URL", "postgres://app:s3cret@db:5432/x", f"postgres://app:{R}@db:5432/x"),
    ("HTTPS_PROXY", "http://u:p@proxy:3128", f"http://u:{R}@proxy:3128"),
    (
        "PIP_INDEX_URL",
        "https://__token__:pypi-AgEI@pypi.org/simple",
        f"https://__token__:{R}@pypi.org/simple",
    ),
    ("REDIS_URL", "redis://:hunter2@cache:6379/0", f"redis://{R}@cache:6379/0"),
    ("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/5", R),
    ("UPSTREAM", "https://ghp_0123456789abcdefghijABCD@github.com/x", f"https://{R}@github.com/x"),
    (
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=abc/def==;EndpointSuffix=core.windows.net",
        f"DefaultEndpointsProtocol=https;AccountName=acc;AccountKey={R};EndpointSuffix=core.windows.net",
    ),
    (
        "SERVICEBUS",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=XyZ=",
        f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={R}",
    ),
    (
        "BLOB_SAS_URL",
        "https://a.blob.core.windows.net/c?sv=2020&sig=AbC%2F",
        f"https://a.blob.core.windows.net/c?sv=2020&sig={R}",
    ),
    ("SQL_CONN", "Server=db;User Id=sa;Password=Pa55;", f"Server=db;User Id=sa;Password={R};"),
    ("BEARER", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_part-1", R),
    ("SLACK_HOOK_INFO", "xoxb-1234567890-abcdef", R),
    ("HELPER_NOTE", "use hf_abcdefghijklmnopqrstuvwxyz123456 here", f"use {R} here"),
    ("SOME_ID", "AKIAABCDEFGHIJKLMNOP", R),
    ("PATH", "/usr/bin:/bin", "/usr/bin:/bin"),
    ("PWD", "/work", "/work"),
    ("MONKEY", "banana", "banana"),
    ("TOKENIZERS_PARALLELISM", "false", "false"),
    ("HF_TOKEN_PATH", "/home/me/.hf", "/home/me/.hf"),
    ("SSH_AUTH_SOCK", "/tmp/ssh.sock", "/tmp/ssh.sock"),
    ("CUDA_VISIBLE_DEVICES", "0,1", "0,1"),
    ("HOMEPAGE", "https://example.org/a?b=c", "https://example.org/a?b=c"),
]

REMOTES = [
    ("https://user:token@github.com/o/r.git", f"https://user:{R}@github.com/o/r.git"),
    ("https://ghp_abc@github.com/o/r.git", f"https://{R}@github.com/o/r.git"),
    ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
    ("ssh://git:pw@example.org/r.git", f"ssh://git:{R}@example.org/r.git"),
    ("alice:s3cret@example.org:o/r.git", f"alice:{R}@example.org:o/r.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("/srv/git/r.git", "/srv/git/r.git"),
]


@pytest.mark.parametrize(("argv", "expected"), ARGV)
def test_command_lines(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(["train.py", *argv]) == ["train.py", *expected]


@pytest.mark.parametrize(("name", "value", "expected"), ENV)
def test_environment(name: str, value: str, expected: str) -> None:
    assert redact_env({name: value}) == {name: expected}


@pytest.mark.parametrize(("url", "expected"), REMOTES)
def test_git_remotes(url: str, expected: str) -> None:
    assert redact_text(url) == expected


def test_the_table_covers_thirty_forms_and_names_split_into_words() -> None:
    assert len(ARGV) + len(ENV) + len(REMOTES) >= 30
    assert is_secret_name("AccountKey") and is_secret_name("db.password")
    assert not is_secret_name("OLDPWD") and not is_secret_name("keyboard")
