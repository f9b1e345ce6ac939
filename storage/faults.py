"""What a failed statement says about the database connection under it."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError


def is_disconnect(exc: BaseException) -> bool:
    """Whether `exc` means the connection to the database was lost (a server restart, a
    dropped connection): the work may be tried again on a new connection."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    try:
        import psycopg  # the conversation store's own connection (PostgreSQL only)
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)
