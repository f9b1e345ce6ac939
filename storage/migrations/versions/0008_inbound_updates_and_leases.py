"""inbound updates (handled once, none lost) and leases (one sender, one scheduler, one poller)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:00:00.000000

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import storage.types


# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "inbound_update",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("received_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("handled_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "update_id"),
    )
    # What a poller must still handle, oldest first; handled rows are not in this index.
    op.create_index(
        "ix_inbound_update_unhandled",
        "inbound_update",
        ["bot_id", "update_id"],
        postgresql_where=sa.text("handled_at IS NULL"),
        sqlite_where=sa.text("handled_at IS NULL"),
    )
    op.create_index("ix_inbound_update_received_at", "inbound_update", ["received_at"])
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("lease")
    op.drop_index("ix_inbound_update_received_at", table_name="inbound_update")
    op.drop_index("ix_inbound_update_unhandled", table_name="inbound_update")
    op.drop_table("inbound_update")
