"""All settings, read once at start-up from GRIDBOT_* environment variables or `.env`."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.people import LANGUAGES


class Settings(BaseSettings):
    """gridbot's configuration; every field maps to GRIDBOT_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = Field(default=None, description="Token from @BotFather.")
    bot_username: str | None = Field(
        default=None, description="Bot username for invitation links; asked from Telegram if unset."
    )
    database_url: str = Field(
        default="sqlite:///gridbot.db",
        description="SQLAlchemy URL: sqlite:///file.db or postgresql://user@host/db.",
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org",
        description="Bot API base URL; a local Bot API server or a test fake can stand in.",
    )
    webhook_url: str | None = Field(default=None, description="Public HTTPS URL; webhook mode.")
    webhook_secret: SecretStr | None = Field(
        default=None, description="Secret checked in X-Telegram-Bot-Api-Secret-Token."
    )
    webhook_listen_host: str = Field(default="0.0.0.0", description="Webhook server host.")
    webhook_listen_port: int = Field(default=8080, description="Webhook server port.")
    timezone: str = Field(default="Asia/Shanghai", description="Local time zone of the city.")
    default_language: str = Field(default="zh-hans", description="zh-hans or en.")
    invite_ttl_days: float = Field(default=7, gt=0, description="Days an invitation stays valid.")
    outbox_rate: float = Field(
        default=29.0, gt=0, description="Messages per second overall (Telegram allows about 30)."
    )
    outbox_chat_interval: float = Field(
        default=1.0, gt=0, description="Seconds between two messages to the same chat."
    )
    duplicate_radius_m: float = Field(
        default=100.0,
        gt=0,
        description="Metres around a report where open tickets of its category are offered.",
    )
    load_sample_city: bool = Field(
        default=True, description="Load the bundled sample city when the database is empty."
    )
    scheduler: bool = Field(
        default=True,
        description="Run the deadline sweep and the digests in this process "
        "(on PostgreSQL several processes may; on SQLite keep it to one).",
    )
    sweep_interval: float = Field(
        default=60.0, gt=0, description="Seconds between two deadline sweeps."
    )
    digest_time: time = Field(
        default=time(8, 30),
        description="Local time of the daily digest to grid leaders, secretaries and officers "
        "(HH:MM; working days only).",
    )
    call_reminder_minutes: float = Field(
        default=60,
        gt=0,
        description="Minutes before a call's start at which those coming are reminded.",
    )
    check_in_radius_m: float = Field(
        default=300.0, gt=0, description="Metres from a call's place within which check-in works."
    )
    check_in_early_minutes: float = Field(
        default=30, ge=0, description="Minutes before a call's start at which check-in opens."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
