"""What service posts ask for: a community's posts, the posts a member holds, and the count
of places taken, changed in the database itself so that concurrent claims never overfill."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import PostHolder, ServicePost


async def take_post_place(session: AsyncSession, post_id: int) -> bool:
    """Count one more holder of the post if a place is left (one conditional UPDATE, so a full
    post never takes one more); whether it did."""
    taken = await session.exec(
        sa.update(ServicePost)
        .where(ServicePost.id == post_id, ServicePost.held < ServicePost.places)
        .values(held=ServicePost.held + 1)
    )
    return taken.rowcount != 0


async def free_post_place(session: AsyncSession, post_id: int) -> None:
    """Count one holder fewer of the post."""
    await session.exec(
        sa.update(ServicePost).where(ServicePost.id == post_id).values(held=ServicePost.held - 1)
    )


async def posts_of_community(session: AsyncSession, community_id: int) -> list[ServicePost]:
    """The community's posts, in the order they were set up."""
    return list(
        (
            await session.exec(
                select(ServicePost)
                .where(ServicePost.community_id == community_id)
                .order_by(ServicePost.id)
            )
        ).all()
    )


async def post_ids_held_by(session: AsyncSession, member_id: int) -> set[int]:
    """The ids of the posts the member holds."""
    return set(
        (
            await session.exec(select(PostHolder.post_id).where(PostHolder.member_id == member_id))
        ).all()
    )


async def posts_held_by(session: AsyncSession, member_id: int) -> list[ServicePost]:
    """The posts the member holds, in the order they were set up."""
    return list(
        (
            await session.exec(
                select(ServicePost)
                .join(PostHolder, PostHolder.post_id == ServicePost.id)
                .where(PostHolder.member_id == member_id)
                .order_by(ServicePost.id)
            )
        ).all()
    )
