"""The `learnexa` command: Django's management utility with the project's settings."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)

    execute_from_command_line(["learnexa", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
