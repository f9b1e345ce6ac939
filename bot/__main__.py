"""`python -m bot` is the `gridbot` command."""

from bot.cli import app

app(prog_name="gridbot")
