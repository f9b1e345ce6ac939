"""The rules: no Telegram, no engine. Use cases take a session and a clock."""
