"""A member's registration as the secretary receives it (with Approve / Reject), and the
decision as the member receives it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from domain.members import SERVICE_KINDS
from storage.enums import MemberStatus
from views.buttons import MemberDecision
from views.cards import localized_name
from views.i18n import Translate


def registration_text(data: Mapping[str, Any], language: str, t: Translate) -> str:
    lines = [t("member.registration", full_name=data["full_name"], branch=data["branch"])]
    community = localized_name(data, "community", language)
    if community:  # a card queued before the place was carried has none
        grid = localized_name(data, "grid", language)
        if grid:
            lines.append(t("member.registration_lives", community=community, grid=grid))
        else:
            lines.append(t("member.registration_lives_community", community=community))
    services = [t(f"member.service.{c}") for c in data.get("services") or [] if c in SERVICE_KINDS]
    if services:
        lines.append(t("member.registration_services", services=", ".join(services)))
    if data.get("skills"):
        lines.append(t("member.registration_skills", skills=", ".join(data["skills"])))
    return "\n".join(lines)


def registration_keyboard(member_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("member.btn.approve"), callback_data=MemberDecision(id=member_id, ok=True)
    )
    builder.button(
        text=t("member.btn.reject"), callback_data=MemberDecision(id=member_id, ok=False)
    )
    return builder.as_markup()


def decision_text(data: Mapping[str, Any], t: Translate) -> str:
    if data["status"] == MemberStatus.APPROVED.value:
        return t("member.decision.approved")
    return t("member.decision.rejected", reason=data.get("reason") or "")
