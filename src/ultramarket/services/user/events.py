"""Events the user service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid

from ultramarket.core.events import Event


class ProfileUpdated(Event):
    """A user changed their profile; ``changed`` names the fields that changed."""

    type = "user.profile_updated.v1"
    user_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    locale: str | None
    changed: list[str]
