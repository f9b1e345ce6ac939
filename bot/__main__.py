"""`python -m bot` is the `gridbot` command."""

import gc

# Importing the command line builds long-lived objects and next to no garbage: collections
# during the imports would only walk them (bot.cli.collector_off says more).
gc.disable()
try:
    from bot.cli import app
finally:
    gc.enable()

app(prog_name="gridbot")
