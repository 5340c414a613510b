"""Roles, scopes and who is asking."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a person may do in the console, from most to least."""

    ADMIN = "admin"
    OPERATOR = "operator"
    ANALYST = "analyst"
    TREASURY = "treasury"
    VIEWER = "viewer"


# Every scope a token or a role can hold. ``read`` covers every read endpoint and the
# live feed; each write has its own scope.
# Feeds: the administrators describe (feeds:describe), the analysts review
# (feeds:review), both investigate what reconciliation finds (feeds:reconcile).
SCOPES = frozenset(
    {
        "read",
        "prices:write",
        "rules:write",
        "loads:write",
        "users:write",
        "comparisons:run",
        "feeds:describe",
        "feeds:review",
        "feeds:reconcile",
        "schemas:write",
        "treasury:write",
    }
)

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: SCOPES,
    Role.OPERATOR: frozenset(
        {
            "read",
            "prices:write",
            "loads:write",
            "comparisons:run",
            "feeds:describe",
            "feeds:reconcile",
            "treasury:write",
        }
    ),
    Role.ANALYST: frozenset({"read", "feeds:review", "feeds:reconcile"}),
    Role.TREASURY: frozenset({"read", "treasury:write"}),
    Role.VIEWER: frozenset({"read"}),
}


class AuthError(Exception):
    """A request without valid credentials (401) or without the right (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: a user (by session or trusted proxy) or a token."""

    name: str
    kind: str  # "user" or "token"
    scopes: frozenset[str]
    role: Role | None = None  # users only
    csrf_token: str | None = None  # sessions only: their forms must carry it
    via: str = field(default="session")  # session, proxy or token

    @property
    def actor(self) -> str:
        """How the audit log names it."""
        return self.name if self.kind == "user" else f"token:{self.name}"

    def allows(self, scope: str) -> bool:
        """Whether it holds ``scope``."""
        return scope in self.scopes

    def require(self, scope: str, *alternatives: str) -> None:
        """Raise AuthError 403 unless it holds ``scope`` or one of the ``alternatives``."""
        wanted = (scope, *alternatives)
        if not any(s in self.scopes for s in wanted):
            held = "role " + self.role if self.role else "token"
            raise AuthError(
                403, f"the {held} of {self.name!r} does not allow {' or '.join(wanted)}"
            )

    def require_role(self, *roles: Role) -> None:
        """Raise AuthError 403 unless it is a user with one of ``roles``."""
        if self.role not in roles:
            wanted = " or ".join(roles)
            raise AuthError(403, f"this needs the role {wanted}; {self.name!r} is {self.role}")


def check_scopes(scopes: list[str]) -> frozenset[str]:
    """The scopes, or ValueError naming the unknown ones."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
    if not scopes:
        raise ValueError(f"give at least one scope: {sorted(SCOPES)}")
    return frozenset(scopes)
