"""Values as Dataverse sends them, made safe for the users table: single-line text, GUIDs
as canonical text, yes/no and choice columns, emails."""

from __future__ import annotations

import re
import unicodedata
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

_email_validator = EmailValidator()


def clean_text(value, max_length: int) -> str:
    """A single line of printable text, at most `max_length` characters."""
    if type(value) is str:  # nearly always: checked first
        text = value
    elif value is None or isinstance(value, (dict, list)):
        return ""
    elif isinstance(value, bool):
        text = "Yes" if value else "No"
    else:
        text = str(value)
    # Most values are already clean: printable (no control, format or private-use
    # characters, no whitespace but the space), trimmed, single-spaced, normalized.
    if (
        text.isprintable()
        and "  " not in text
        and text[:1] != " "
        and text[-1:] != " "
        and (text.isascii() or unicodedata.is_normalized("NFC", text))
    ):
        return text[:max_length]
    text = unicodedata.normalize("NFC", text)
    # Control and format characters (including bidirectional overrides) have no place in a
    # name or a title and can disguise one; whitespace of any kind becomes a space.
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return " ".join(text.split())[:max_length]


# A GUID as Dataverse writes it.
_CANONICAL_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def clean_column(values: list, max_length: int) -> list[str]:
    """clean_text of each value; at once where every value is text that is already clean."""
    values = [
        "" if v is None else v if v.__class__ is str else clean_text(v, max_length) for v in values
    ]
    # One check of the values joined: a value that isn't clean makes the whole fail it (so
    # might, harmlessly, a "|" next to a space). "|" is printable, and composes with nothing.
    text = "|".join(values)
    if (
        text.isprintable()
        and "  " not in text
        and "| " not in text
        and " |" not in text
        and text[:1] != " "
        and text[-1:] != " "
        and (text.isascii() or unicodedata.is_normalized("NFC", text))
    ):
        if values and max(map(len, values)) > max_length:
            return [value[:max_length] for value in values]
        return values
    return [clean_text(value, max_length) for value in values]


def parse_guid(value) -> str | None:
    """A GUID as canonical text (lowercase, hyphenated), or None if `value` isn't one.

    The sync keeps record ids as text from mapping to writing: hashing and comparing text
    is done in C, a uuid.UUID's in Python, for every id of every page.
    """
    if type(value) is not str:
        return None
    if _CANONICAL_GUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def as_flag(value) -> bool:
    """A yes/no column, also when it comes as text or a number ("true", 1)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or (type(value) is int and value == 1)


def as_number(value):
    """A choice column's value, also when it comes as text ("4")."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


# Plain addresses (name@example.com): a strict subset of what Django's EmailValidator
# accepts (ASCII only, every character its dot-atom allows before the @), checked with one
# regex; anything else is left to the validator. Both cases are spelled out: IGNORECASE
# makes the regex half as fast again.
_ATEXT = r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]"
_LABEL = r"[0-9A-Za-z](?:[0-9A-Za-z-]{0,61}[0-9A-Za-z])?"
_PLAIN_EMAIL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")


def valid_email(email: str) -> bool:
    if len(email) > 254:
        return False
    if _PLAIN_EMAIL.fullmatch(email):
        return True
    try:
        _email_validator(email)
    except ValidationError:
        return False
    return True
