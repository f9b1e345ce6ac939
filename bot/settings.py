"""All settings, read once at start-up from GRIDBOT_* environment variables or `.env`."""

from __future__ import annotations

import math
import re
from datetime import time
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.languages import LANGUAGES

# What a `gridbot run` process may do; every process does all three unless told otherwise.
ROLES = frozenset({"serve", "send", "schedule"})

# A token as @BotFather gives it (aiogram checks the same shape, less strictly).
TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
# What Telegram accepts as a webhook's secret_token.
WEBHOOK_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Telegram's own Bot API posts webhooks over HTTPS to these ports only; a local Bot API server
# (any other GRIDBOT_TELEGRAM_API_BASE) also posts over plain HTTP, to any port.
TELEGRAM_API_HOST = "api.telegram.org"
TELEGRAM_WEBHOOK_PORTS = (443, 80, 88, 8443)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Longest validity of an invitation, in days (GRIDBOT_INVITE_TTL_DAYS, `gridbot invite --days`).
MAX_INVITE_DAYS = 365


def invite_days_problem(days: float) -> str | None:
    """Why `days` is no invitation's validity (nan, infinite, not above 0, over the maximum)."""
    if not (0 < days <= MAX_INVITE_DAYS):  # also false for nan
        return f"must be a number of days above 0 and at most {MAX_INVITE_DAYS}"
    return None


def _http_url_problem(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number 0-65535)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


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
    db_pool_size: int = Field(
        default=15,
        ge=1,
        le=1000,
        description="PostgreSQL connections this process keeps open for updates and jobs.",
    )
    db_pool_overflow: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="PostgreSQL connections this process may open beyond the pool in a burst.",
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

    @field_validator(
        "bot_token", "bot_username", "webhook_url", "webhook_secret", "redis_url", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `.env.example` lists these empty: an empty value means "not set", as if absent.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # The token itself never goes into the message: it is a password.
        if value is not None and not TOKEN_SHAPE.fullmatch(value.get_secret_value()):
            raise ValueError(
                "is not a bot token: @BotFather gives one like 123456789:AAH... "
                "(digits, a colon, then letters, digits, - and _)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from storage.db import parse_database_url

        parse_database_url(value)  # ValueError says what is wrong, without the URL
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("redis", "rediss", "unix") or not value.split("://", 1)[1]:
            raise ValueError("is not a Redis URL: use redis://host:6379/0 (or rediss://, unix://)")
        return value

    @field_validator("telegram_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        problem = _http_url_problem(value)
        if problem:
            raise ValueError(f"{problem}, e.g. https://{TELEGRAM_API_HOST}")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        problem = _http_url_problem(value)
        if problem:
            raise ValueError(f"{problem}, e.g. https://bot.example.org/telegram")
        api_base = info.data.get("telegram_api_base")
        if api_base is None or urlsplit(api_base).hostname != TELEGRAM_API_HOST:
            return value  # a local Bot API server posts over HTTP too, to any port
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError(
                "must be an https:// URL: Telegram posts updates over HTTPS only "
                "(plain http:// works with a local Bot API server, GRIDBOT_TELEGRAM_API_BASE)"
            )
        if (parts.port or 443) not in TELEGRAM_WEBHOOK_PORTS:
            ports = ", ".join(str(port) for port in TELEGRAM_WEBHOOK_PORTS)
            raise ValueError(f"port {parts.port}: Telegram posts updates only to ports {ports}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET_SHAPE.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1 to 256 characters, each a letter, a digit, - or _")
        return value

    @field_validator("webhook_listen_port")
    @classmethod
    def _listen_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a TCP port, 1 to 65535")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown level {value!r}: use {', '.join(LOG_LEVELS)} (any case)")
        return level

    @field_validator("invite_ttl_days", mode="before")
    @classmethod
    def _invite_days(cls, value: object) -> float:
        try:
            days = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            days = math.nan
        problem = invite_days_problem(days)
        if problem:
            raise ValueError(problem)
        return days

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
