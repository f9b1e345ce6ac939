"""Bulk writes straight to the driver read back exactly as the ORM wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from storage.bulk import insert_rows, update_rows
from storage.enums import Lane, OutboxStatus
from storage.models import OutboxMessage
from storage.outbox import fetch_pending

AWKWARD = {
    "text": 'tab\there, new\nline, back\\slash, quote " and 中文 ✅',
    "nested": {"list": [1, 2.5, None, True], "empty": ""},
}


async def test_rows_round_trip_through_insert_and_update(sessionmaker) -> None:
    now = datetime(2026, 11, 25, 2, 0, 0, 123456, tzinfo=UTC)
    rows = [
        {
            "chat_id": 10 + i,
            "lane": int(Lane.ESCALATION),
            "kind": "notice",
            "data": AWKWARD | {"i": i},
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "not_before": now,
            "created_at": now,
            "error": None if i else "first\\row\twith\nescapes",
        }
        for i in range(3)
    ]
    async with sessionmaker() as session:
        await insert_rows(session, OutboxMessage.__table__, rows)
        await session.commit()
        stored = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        assert [m.chat_id for m in stored] == [10, 11, 12]
        assert [m.data for m in stored] == [AWKWARD | {"i": i} for i in range(3)]
        assert stored[0].error == "first\\row\twith\nescapes" and stored[1].error is None
        assert all(m.created_at == now and m.status == OutboxStatus.PENDING for m in stored)
        # The sender's query (string comparison of times on SQLite) finds them.
        due = await fetch_pending(session, now=now, limit=10)
        assert [r.chat_id for r in due] == [10, 11, 12]
        assert await fetch_pending(session, now=now - timedelta(microseconds=1), limit=10) == []

        later = now + timedelta(hours=1)
        await update_rows(
            session,
            OutboxMessage.__table__,
            [
                {"id": m.id, "status": OutboxStatus.SENT, "sent_at": later, "data": {"x": m.id}}
                for m in stored[:2]
            ],
        )
        await session.commit()
        statement = select(OutboxMessage).order_by(OutboxMessage.id)
        again = (await session.exec(statement.execution_options(populate_existing=True))).all()
        assert [(m.status, m.sent_at) for m in again] == [
            (OutboxStatus.SENT, later),
            (OutboxStatus.SENT, later),
            (OutboxStatus.PENDING, None),
        ]
        assert again[0].data == {"x": again[0].id} and again[2].data == AWKWARD | {"i": 2}
