"""the departments' figures: reported in and finished on time, per month, rolled up from the
ticket events with the units'

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:00:00.000000

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COUNTS = ("reported_in", "reported_in_time", "finished", "finished_in_time", "returned", "silent")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "department_month_figures",
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.ForeignKeyConstraint(["department_id"], ["department.id"]),
        sa.PrimaryKeyConstraint("month", "department_id"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("department_month_figures")
