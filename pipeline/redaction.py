"""Secrets in Beam arguments (`--beam-arg=--db_password=…`) never reach a log, ML Metadata or `last_run.json`.

An option whose name looks secret (token, password, passwd, secret, key, credential, auth; any case) has
its value replaced by `***`, in both the `--name=value` and the `--name value` forms. Beam still gets
the real value: only what is written down is redacted.

Where Beam arguments travel in a run (measured by grepping a run's output folder for the values):
TFX's LocalDagRunner logs the whole deployment config, every Beam component's arguments included, and
Beam warns "Discarding unparseable args: [...]" for each option it does not know, each time a Beam
pipeline is built. Both go through Python's logging, which `install` redacts. ML Metadata, the HTML
report and the terminal never held them; `last_run.json` holds them redacted (see pipeline/rerun.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "***"
SECRET_NAME = re.compile(r"token|password|passwd|secret|key|credential|auth", re.IGNORECASE)
# `--name=value` anywhere in a text, for values of secret-looking options this process was never told about.
_INLINE = re.compile(r"(--[\w.-]+)=([^\s'\",\]\)]+)")


def _is_secret_option(arg: str) -> bool:
    return arg.startswith("-") and bool(SECRET_NAME.search(arg.split("=", 1)[0]))


def secret_values(args: Iterable[str]) -> list[str]:
    """The values of the secret-looking options among `args`, in either form."""
    args = list(args)
    found = []
    for position, arg in enumerate(args):
        if not _is_secret_option(arg):
            continue
        if "=" in arg:
            found.append(arg.split("=", 1)[1])
        elif position + 1 < len(args) and not args[position + 1].startswith("-"):
            found.append(args[position + 1])
    return [value for value in found if value]


def redact_args(args: Iterable[str]) -> tuple[str, ...]:
    """`args` with the value of every secret-looking option replaced by REDACTED."""
    args = list(args)
    redacted = []
    for position, arg in enumerate(args):
        previous = args[position - 1] if position else ""
        if _is_secret_option(arg) and "=" in arg:
            redacted.append(f"{arg.split('=', 1)[0]}={REDACTED}")
        elif _is_secret_option(previous) and "=" not in previous and not arg.startswith("-"):
            redacted.append(REDACTED)
        else:
            redacted.append(arg)
    return tuple(redacted)


def secret_options(args: Iterable[str]) -> list[str]:
    """The names of the options among `args` whose values `redact_args` hides."""
    args = list(args)
    return [
        args[position - 1] if value == REDACTED else value.split("=", 1)[0]
        for position, (arg, value) in enumerate(zip(args, redact_args(args), strict=True))
        if arg != value
    ]


def redact(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every known secret value, and the value of any `--secret-looking=value`, replaced.

    A known value is replaced wherever it appears, so a short one blanks more than itself: safe, if untidy.
    """
    for value in sorted(set(values), key=len, reverse=True):  # longest first: one value may contain another
        text = text.replace(value, REDACTED)
    return _INLINE.sub(lambda m: f"{m[1]}={REDACTED}" if SECRET_NAME.search(m[1]) else m[0], text)


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message, and its traceback text, when they hold a secret; passes every record."""

    def __init__(self, values: Iterable[str] = ()):
        super().__init__()
        self.values = tuple(values)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redacts in place; a record without a secret is left untouched (the runner's progress reads its args)."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a broken format string; logging would print msg and args raw)
            record.msg = redact(str(record.msg), self.values)
            args = record.args or ()
            if isinstance(args, dict):
                record.args = {key: redact(str(value), self.values) for key, value in args.items()}
            else:
                record.args = tuple(redact(str(arg), self.values) for arg in args)
        else:
            cleaned = redact(message, self.values)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.values)
        return True


def install(beam_args: Iterable[str]) -> None:
    """Redacts the secrets of `beam_args` from every log record this process creates from now on.

    Applied where records are made rather than on handlers: TFX, Beam and TensorFlow add their own handlers
    when they load, after any filter put on the handlers of the moment.
    """
    redacting = RedactingFilter(secret_values(beam_args))
    make_record = logging.getLogRecordFactory()
    previous = getattr(make_record, "wrapped", make_record)  # installed twice in one process: wrap the original once

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    factory.wrapped = previous
    logging.setLogRecordFactory(factory)
