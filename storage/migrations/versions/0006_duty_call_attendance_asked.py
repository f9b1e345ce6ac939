"""duty: the organiser is asked for attendance once per call

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 14:35:00.000000

"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401

import storage.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("duty_call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "attendance_asked_at", storage.types.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("duty_call", schema=None) as batch_op:
        batch_op.drop_column("attendance_asked_at")
