"""The `learnexa` command: Django's management utility with the project's settings."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        data_dir = settings.DATA_DIR
    except ImproperlyConfigured as exc:
        # A misconfigured environment (a bad encryption key): one line that says what to fix,
        # not a traceback through Django's settings machinery.
        sys.stderr.write(f"learnexa: {exc}\n")
        sys.exit(2)
    # Only this user may enter the data folder: it holds the SQLite database and its WAL,
    # and the demo's encryption key.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    execute_from_command_line(["learnexa", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
