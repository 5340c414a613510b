"""Passwords, hashed with argon2id (memory-hard) through argon2-cffi."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
# argon2-cffi's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes).
_HASHER = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name takes as long as a
# wrong password and sign-in does not reveal which names exist.
_DUMMY = _HASHER.hash("ledgerflow: no such user")


def check_password(password: str) -> str:
    """The password, or ValueError saying what it lacks."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if password.strip() != password:
        raise ValueError("a password may not begin or end with spaces")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash to store."""
    return _HASHER.hash(check_password(password))


def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash (False when there is none)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(stored)
