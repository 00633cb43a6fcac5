"""Errors a user can act on, each with its documented exit code.

The CLI prints ``Error: <message>`` on stderr and exits with ``exit_code``;
anything that is not an :class:`MmrError` is a bug and exits 1 (with the
traceback only when ``MMR_DEBUG=1``).
"""

from __future__ import annotations

import re

# Exit codes, documented in the README. 2 is Click's own code for usage errors.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_AUTH = 4
EXIT_PROVIDER = 5
EXIT_REQUEST_REJECTED = 6
EXIT_LEDGER = 7
EXIT_BUDGET = 8
EXIT_ROWS_FAILED = 9  # a batch finished, but some of its output rows are error rows
EXIT_INTERRUPTED = 130


class MmrError(Exception):
    """Base class: a one-line message and an exit code."""

    exit_code = EXIT_INTERNAL
    request_id: str | None = None  # the failed request's id in the ledger, once it had one

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(MmrError):
    """Bad input on the command line or stdin (empty prompt, binary stdin...)."""

    exit_code = EXIT_USAGE


class ConfigError(MmrError):
    """The tiers file is missing, malformed or names something that does not exist."""

    exit_code = EXIT_CONFIG


class MissingKeyError(MmrError):
    """No usable API key: names the environment variable to set."""

    exit_code = EXIT_AUTH


class AllAttemptsFailed(MmrError):
    """Every model in the fallback chain failed; the message lists each attempt."""

    exit_code = EXIT_PROVIDER

    def __init__(self, message: str, attempts: list | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.attempts = attempts or []
        if exit_code is not None:
            self.exit_code = exit_code


class LedgerError(MmrError):
    """The ledger database cannot be opened, read or written."""

    exit_code = EXIT_LEDGER


class BudgetExceeded(MmrError):
    """A budget or ``--max-cost`` refuses the request: its worst-case cost would cross the limit."""

    exit_code = EXIT_BUDGET


def error_kind(e: MmrError) -> str:
    """The ``kind`` of an error in JSON: ``AllAttemptsFailed`` -> ``all_attempts_failed``, ``UsageError`` -> ``usage``."""
    name = type(e).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_KEY_LIKE = re.compile(r"\b(sk|pk|key)-[A-Za-z0-9_\-]{6,}")
# The user-info of a URL (``https://user:password@host``): everything from the scheme to the last
# ``@`` before the path, since a pasted password may hold an unescaped ``@``.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#]*@")


def redact_url(text: str) -> str:
    """``text`` with the user-info of every URL in it (``https://user:pass@host``) replaced."""
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}[redacted]@", text)


def redact(text: str, secret: str | None) -> str:
    """Remove an API key (and anything key-shaped, and a URL's user and password) from a message."""
    if secret:
        for form in {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}:
            text = text.replace(form, "[redacted]")
    return _KEY_LIKE.sub(lambda m: f"{m.group(1)}-[redacted]", redact_url(text))
