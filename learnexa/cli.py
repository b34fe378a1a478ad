"""The `learnexa` command: Django's management utility with the project's settings."""

from __future__ import annotations

import json
import os
import sys

from django.core.mail.backends.console import EmailBackend as ConsoleEmailBackend

NO_TABLES = "The database has no tables yet: run `uv run learnexa migrate`."


class StderrConsoleEmailBackend(ConsoleEmailBackend):
    """Emails printed to standard error: a command's standard output is its result (one
    JSON document with --json), which an email printed first would spoil."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream", sys.stderr)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    json_output = "--json" in args
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
    # Unless the operator chose a backend, the console one, on standard error (the demo's
    # processes inherit this too).
    os.environ.setdefault("LEARNEXA_EMAIL_BACKEND", "learnexa.cli.StderrConsoleEmailBackend")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    from learnexa.demo import state_file

    if json_output:
        _json_argument_errors()
    try:
        data_dir = settings.DATA_DIR
    except ImproperlyConfigured as exc:
        # A misconfigured environment (a bad encryption key): one line that says what to fix,
        # not a traceback through Django's settings machinery.
        fail(str(exc), json_output, code=2)
    # Only this user may enter the data folder: it holds the SQLite database and its WAL,
    # the demo's encryption key, and demo.json, which widens the allowed Dynamics hosts.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Beside a running demo, reach its simulator as the demo's own processes do.
    state_file.apply(settings)

    try:
        execute_from_command_line(["learnexa", *args])
    except (OperationalError, ProgrammingError) as exc:
        if not is_missing_table(exc):
            raise
        fail(missing_tables_message(), json_output)


def fail(message: str, json_output: bool, code: int = 1):
    """One line on standard error, or with --json one JSON object on standard output."""
    if json_output:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    else:
        sys.stderr.write(f"learnexa: {message}\n")
    sys.exit(code)


def _json_argument_errors() -> None:
    """With --json, a misspelled or missing argument is one JSON object on standard output
    too (with argparse's exit status, 2), not only the usage on standard error."""
    from django.core.management.base import CommandError, CommandParser

    def error(parser: CommandParser, message: str):
        if parser.called_from_command_line:
            fail(f"{message} (see `{parser.prog} --help`)", True, code=2)
        raise CommandError(f"Error: {message}")

    CommandParser.error = error


def is_missing_table(exc: Exception) -> bool:
    # SQLite says "no such table"; PostgreSQL raises undefined_table (SQLSTATE 42P01).
    return "no such table" in str(exc) or getattr(exc.__cause__, "sqlstate", None) == "42P01"


def missing_tables_message() -> str:
    from django.db import connection

    try:
        connection.close()  # a PostgreSQL transaction that failed can't introspect
        tables = connection.introspection.table_names()
    except Exception:  # noqa: BLE001 — the message below is right either way
        tables = []
    if "django_migrations" in tables:
        return "The database is missing tables: run `uv run learnexa migrate`."
    return NO_TABLES


if __name__ == "__main__":
    main()
