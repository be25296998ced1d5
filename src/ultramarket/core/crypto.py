"""Symmetric sealing of small secrets at rest (MFA secrets, one-time links in events)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr


class Sealer:
    """Fernet (AES-128-CBC + HMAC) keyed from the platform secret and a purpose, so a
    value sealed for one purpose cannot be opened as another."""

    def __init__(self, secret: SecretStr, purpose: str) -> None:
        material = f"{purpose}:".encode() + secret.get_secret_value().encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, sealed: str | None) -> str | None:
        """The plain text, or None when the value is missing, altered or sealed elsewhere."""
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
