"""Domain errors carry a locale key and parameters; the bot renders them per person."""

from __future__ import annotations


class DomainError(Exception):
    """A refused action with a reason a person can read."""

    def __init__(self, key: str, /, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params

    def __str__(self) -> str:
        if not self.params:
            return self.key
        details = ", ".join(f"{name}={value}" for name, value in self.params.items())
        return f"{self.key} ({details})"


class NotFound(DomainError):
    """Something named by id or code does not exist."""


class NotAllowed(DomainError):
    """The person's roles do not cover this action here."""


class InvitationRefused(DomainError):
    """An invitation code that is unknown, used or expired."""
