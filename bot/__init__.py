"""Composition root and Telegram runtime: settings, CLI, bot and dispatcher, outbox sender."""
