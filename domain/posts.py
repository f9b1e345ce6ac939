"""Service posts (认岗): a community's standing posts with places, claimed and left by its
approved members. A place is taken by one conditional UPDATE, so a full post never takes one
more, however many claims arrive at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.members import approved_member
from storage.models import (
    Member,
    Person,
    PostHolder,
    ServicePost,
)
from storage.posts import (
    free_post_place,
    post_ids_held_by,
    posts_held_by,
    posts_of_community,
    take_post_place,
)


async def claim_post(
    *, session: AsyncSession, clock: Clock, person: Person, post_id: int
) -> ServicePost:
    """Take a place on a standing post of the member's own community (认岗)."""
    member = await approved_member(session, person)
    post = await session.get(ServicePost, post_id)
    if post is None or post.community_id != member.community_id:
        raise NotFound("duty.post_unknown")
    if await session.get(PostHolder, (post.id, member.id)) is not None:
        raise DomainError("duty.post_held")
    if not await take_post_place(session, post.id):
        raise DomainError("duty.post_full", places=post.places)
    session.add(PostHolder(post_id=post.id, member_id=member.id, since=clock.now()))
    await session.flush()
    await session.refresh(post)
    return post


async def leave_post(*, session: AsyncSession, person: Person, post_id: int) -> None:
    member = await approved_member(session, person)
    holder = await session.get(PostHolder, (post_id, member.id))
    if holder is None:
        raise DomainError("duty.post_not_held")
    await session.delete(holder)
    await free_post_place(session, post_id)
    await session.flush()


@dataclass(frozen=True)
class PostView:
    """A post of the member's community as /posts shows it."""

    post: ServicePost
    mine: bool


async def posts_of_member(*, session: AsyncSession, person: Person) -> list[PostView]:
    """The approved member's community's posts, in the order they were set up, with those held.

    Refused (duty.not_approved) for anyone not approved.
    """
    member = await approved_member(session, person)
    posts = await posts_of_community(session, member.community_id)
    held = await post_ids_held_by(session, member.id)
    return [PostView(post, post.id in held) for post in posts]


async def posts_held(session: AsyncSession, member: Member) -> list[ServicePost]:
    """The posts the member holds, in the order they were set up."""
    return await posts_held_by(session, member.id)
