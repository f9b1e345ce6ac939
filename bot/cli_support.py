"""What every `gridbot` command shares: settings from the environment, one-line refusals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from pydantic import ValidationError

from bot.settings import Settings
from storage.db import DatabaseSetupError


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit, never a traceback."""
    typer.echo(f"gridbot: {message}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one line per bad setting and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        # Each line names the variable and the rule, never the value (a token is a password).
        for error in exc.errors(include_input=False, include_url=False):
            name = "GRIDBOT_" + "_".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"gridbot: {name}: {_message(error)}", err=True)
        raise typer.Exit(2) from None


def _message(error: dict) -> str:
    # A validator's own ValueError reads better without pydantic's "Value error, " before it.
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return error["msg"]


@contextmanager
def database_setup() -> Iterator[None]:
    """A database that cannot be used as configured (no driver, unreachable, read-only, a
    refused migration target) is one line and exit 2."""
    try:
        yield
    except DatabaseSetupError as exc:
        fail(str(exc), 2)
