"""Password hashing (Argon2id) and the password policy."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ultramarket.core.errors import ValidationFailed

MIN_LENGTH = 8
MAX_LENGTH = 256

# Argon2id with OWASP's recommended floor (19 MiB, 2 passes, 1 lane): about 40 ms a
# hash here, so two cores still serve dozens of logins a second. Hashes made with
# other parameters are upgraded on the next successful login (``needs_rehash``).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this keeps unknown-email logins as slow as wrong-password ones.
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_policy(password: str, *, email: str | None = None, field: str = "password") -> None:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    elif len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    elif password.lower() in common_passwords():
        problems.append("is too common; choose a less guessable password")
    elif email and password.lower() == email.lower():
        problems.append("must not be your email address")
    if problems:
        raise ValidationFailed(
            "Password does not meet the policy",
            details=[{"field": field, "message": p, "type": "password_policy"} for p in problems],
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
