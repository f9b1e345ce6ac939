"""the three rates: monthly figures per unit rolled up from the ticket events, and the events
by time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 19:00:00.000000

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import storage.types


# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COUNTS = (
    "dispatched",
    "responded",
    "returned",
    "followups",
    "solved",
    "unanswered",
    "ratings",
    "satisfied",
    "rating_sum",
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "unit_month_figures",
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.ForeignKeyConstraint(["unit_id"], ["org_unit.id"]),
        sa.PrimaryKeyConstraint("month", "unit_id"),
    )
    op.create_table(
        "figures_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("upto", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_event_at", "ticket_event", ["at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_ticket_event_at", table_name="ticket_event")
    op.drop_table("figures_mark")
    op.drop_table("unit_month_figures")
