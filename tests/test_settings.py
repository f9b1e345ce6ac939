"""Settings refuse what cannot work, each with a message that says why (never a token's value)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from bot.settings import MAX_INVITE_DAYS, Settings

URL_FORMS = "sqlite:///path.db or postgresql://user:password@host/db"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


def refusal(**values: object) -> tuple[str, str]:
    """The one setting refused and the message for it."""
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    (error,) = caught.value.errors(include_input=False)
    (field,) = error["loc"]
    return str(field), str(error["ctx"]["error"]) if "ctx" in error else error["msg"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no GRIDBOT_* variable of the machine running the tests."""
    for name in [name for name in os.environ if name.startswith("GRIDBOT_")]:
        monkeypatch.delenv(name)


def test_empty_values_count_as_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # As `.env.example` ships them.
    for name in ("BOT_TOKEN", "BOT_USERNAME", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.setenv(f"GRIDBOT_{name}", "")
    loaded = settings()
    assert loaded.bot_token is None
    assert loaded.bot_username is None
    assert loaded.webhook_url is None
    assert loaded.webhook_secret is None
    assert settings(bot_token="  ").bot_token is None


@pytest.mark.parametrize(
    "token",
    [
        "123456:TEST",
        "123456:GRIDBOT-BENCH",
        "1:x",
        "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_-",
    ],
)
def test_tokens_shaped_as_botfather_gives_them_are_taken(token: str) -> None:
    loaded = settings(bot_token=token)
    assert loaded.bot_token is not None
    assert loaded.bot_token.get_secret_value() == token


@pytest.mark.parametrize(
    "token",
    ["abc", "<token from @BotFather>", "123456:", ":abcdef", "12a456:abc", "123456:ab cd", "1:a/b"],
)
def test_a_malformed_token_is_refused_without_showing_it(token: str) -> None:
    field, message = refusal(bot_token=token)
    assert field == "bot_token"
    assert message == (
        "is not a bot token: @BotFather gives one like 123456789:AAH... "
        "(digits, a colon, then letters, digits, - and _)"
    )


NO_HTTP_URL = "must be an http:// or https:// URL with a host, e.g. https://api.telegram.org"


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("not a url", NO_HTTP_URL),
        ("api.telegram.org", NO_HTTP_URL),
        ("ftp://api.telegram.org", NO_HTTP_URL),
        ("https://", NO_HTTP_URL),
        ("http://127.0.0.1:99999", "is not a URL, e.g. https://api.telegram.org"),
    ],
)
def test_the_api_base_must_be_an_http_url_with_a_host(base: str, message: str) -> None:
    assert refusal(telegram_api_base=base) == ("telegram_api_base", message)


@pytest.mark.parametrize("base", ["https://api.telegram.org", "http://127.0.0.1:8081/"])
def test_a_local_bot_api_server_may_stand_in(base: str) -> None:
    assert settings(telegram_api_base=base).telegram_api_base == base


@pytest.mark.parametrize(
    "url",
    ["https://bot.example.org/telegram", "https://bot.example.org:8443/t", "https://b.org:88"],
)
def test_a_webhook_on_telegrams_own_api_is_https_to_a_port_it_posts_to(url: str) -> None:
    assert settings(webhook_url=url).webhook_url == url


def test_a_webhook_over_plain_http_needs_a_local_bot_api_server() -> None:
    assert refusal(webhook_url="http://bot.example.org/telegram") == (
        "webhook_url",
        "must be an https:// URL: Telegram posts updates over HTTPS only "
        "(plain http:// works with a local Bot API server, GRIDBOT_TELEGRAM_API_BASE)",
    )
    local = settings(
        telegram_api_base="http://127.0.0.1:8081", webhook_url="http://127.0.0.1:9000/hook"
    )
    assert local.webhook_url == "http://127.0.0.1:9000/hook"


def test_a_webhook_port_telegram_does_not_post_to_is_refused() -> None:
    assert refusal(webhook_url="https://bot.example.org:8080/telegram") == (
        "webhook_url",
        "port 8080: Telegram posts updates only to ports 443, 80, 88, 8443",
    )


@pytest.mark.parametrize("url", ["not a url", "bot.example.org/hook", "https:///hook"])
def test_a_webhook_url_that_is_no_url_is_refused(url: str) -> None:
    assert refusal(webhook_url=url) == (
        "webhook_url",
        "must be an http:// or https:// URL with a host, e.g. https://bot.example.org/telegram",
    )


@pytest.mark.parametrize("secret", ["has space", "x" * 257, "ünïcode"])
def test_a_webhook_secret_telegram_would_refuse_is_refused(secret: str) -> None:
    assert refusal(webhook_secret=secret) == (
        "webhook_secret",
        "must be 1 to 256 characters, each a letter, a digit, - or _",
    )


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_the_listen_port_is_a_tcp_port(port: int) -> None:
    assert refusal(webhook_listen_port=port) == (
        "webhook_listen_port",
        "must be a TCP port, 1 to 65535",
    )


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_log_levels_are_taken_in_any_case(given: str, level: str) -> None:
    assert settings(log_level=given).log_level == level


def test_an_unknown_log_level_lists_the_valid_ones() -> None:
    assert refusal(log_level="LOUD") == (
        "log_level",
        "unknown level 'LOUD': use DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)",
    )


@pytest.mark.parametrize("days", ["nan", "inf", "-inf", "0", "-1", "3000000", "1e9", "366", "x"])
def test_invitation_validity_is_bounded(days: str) -> None:
    assert refusal(invite_ttl_days=days) == (
        "invite_ttl_days",
        f"must be a number of days above 0 and at most {MAX_INVITE_DAYS}",
    )


@pytest.mark.parametrize(("days", "value"), [("0.5", 0.5), ("7", 7.0), ("365", 365.0)])
def test_invitation_validity_within_bounds_is_taken(days: str, value: float) -> None:
    assert settings(invite_ttl_days=days).invite_ttl_days == value


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", f"not a database URL: use {URL_FORMS}"),
        ("gridbot.db", f"not a database URL: use {URL_FORMS}"),
        ("mysql://gridbot:s3cret@db/gridbot", f"unsupported database 'mysql': use {URL_FORMS}"),
    ],
)
def test_a_database_url_gridbot_cannot_use_is_refused(url: str, message: str) -> None:
    assert refusal(database_url=url) == ("database_url", message)


@pytest.mark.parametrize(
    "url", ["sqlite:///gridbot.db", "postgresql://u:p@db/gridbot", "postgres://db/gridbot"]
)
def test_sqlite_and_postgresql_urls_are_taken(url: str) -> None:
    assert settings(database_url=url).database_url == url


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis", "redis://", "6379"])
def test_a_redis_url_that_is_not_one_is_refused(url: str) -> None:
    assert refusal(redis_url=url) == (
        "redis_url",
        "is not a Redis URL: use redis://host:6379/0 (or rediss://, unix://)",
    )


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example.org"])
def test_redis_urls_are_taken_and_empty_is_none(url: str) -> None:
    assert settings(redis_url=url).redis_url == url
    assert settings(redis_url="").redis_url is None
