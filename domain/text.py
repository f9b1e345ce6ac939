"""Free text as the bot keeps it: what people type, cleaned once where it enters the domain.

PostgreSQL's text (and jsonb, where dialogs are kept) cannot hold NUL, and a string with a
lone UTF-16 surrogate cannot be encoded as UTF-8 at all, so neither database can store it.
Telegram's clients never send either, but a forged webhook update can. The rule, for every
description, note, reason, name, title or skill: line breaks become "\\n"; NUL, the other C0
control characters except newline and tab, DEL and lone surrogates are dropped; everything
else is kept as typed. Limits and emptiness are checked on the cleaned text.
"""

from __future__ import annotations

import re

_DROPPED = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """The text with line breaks made "\\n" and control characters (but tab and newline)
    and lone surrogates removed; nothing else changes (not even surrounding spaces)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _DROPPED.sub("", text)
