"""The languages the bot speaks, in the order offered: Simplified Chinese first (the default),
then English. A module of its own, so that reading the settings loads nothing else."""

LANGUAGES = ("zh-hans", "en")
