"""What every `gridbot` command shares: settings from the environment, one-line refusals."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError

from bot.settings import Settings


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit, never a traceback."""
    typer.echo(f"gridbot: {message}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one line per bad setting and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "GRIDBOT_" + "_".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"gridbot: {name}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
