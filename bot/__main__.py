"""`python -m bot` is the `gridbot` command."""

from bot.memory import collector_off

# Importing the command line builds long-lived objects and next to no garbage: collections
# during the imports would only walk them.
with collector_off():
    from bot.cli import app

app(prog_name="gridbot")
