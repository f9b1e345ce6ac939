"""All settings, read once at start-up from GRIDBOT_* environment variables or `.env`."""

from __future__ import annotations

from datetime import time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.people import LANGUAGES

# What a `gridbot run` process may do; every process does all three unless told otherwise.
ROLES = frozenset({"serve", "send", "schedule"})


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
        default=29.0,
        gt=0,
        description="Outbox messages per second overall (Telegram allows about 30 in bulk); "
        "replies to the person chatting are not counted here.",
    )
    chat_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds per message to one chat, sustained (Telegram: about 1/s per chat); "
        "replies and outbox messages alike.",
    )
    chat_burst: int = Field(
        default=3, ge=1, le=20, description="Messages one chat may get at once before spacing."
    )
    retry_after_cap: float = Field(
        default=10.0,
        gt=0,
        description="Longest 429 retry_after waited for in memory; a longer wait sends an "
        "outbox row back to its table to be retried then.",
    )
    paid_broadcast_rate: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Bulk messages per second sent with allow_paid_broadcast (paid in Stars); "
        "0 keeps paid broadcasting off.",
    )
    flood_rate: float = Field(
        default=2.0, gt=0, description="Updates per second one person may send, sustained."
    )
    flood_burst: int = Field(
        default=10, ge=1, description="Updates one person may send at once before the limit."
    )
    max_concurrent_updates: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Updates handled at once by this process (one chat holds at most one).",
    )
    roles: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"serve", "send", "schedule"}),
        description="What this process does: serve (updates), send (the outbox), schedule "
        "(jobs); comma-separated.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for dialog state and per-chat ordering across processes "
        "(redis://host:6379/0); without it, the database.",
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

    @field_validator("roles", mode="before")
    @classmethod
    def _known_roles(cls, value: object) -> frozenset[str]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        roles = frozenset(value)  # type: ignore[arg-type]
        unknown = roles - ROLES
        if unknown:
            raise ValueError(
                f"unknown role {', '.join(sorted(unknown))}; use serve, send and/or schedule"
            )
        if not roles:
            raise ValueError("name at least one of serve, send, schedule")
        return roles

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
