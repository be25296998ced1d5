"""URL slugs: lowercase ASCII words joined by dashes, from any name."""

from __future__ import annotations

import re
import unicodedata

MAX_SLUG = 180
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_NON_WORD = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """ "Café Crème 2.0!" -> "cafe-creme-2-0"; never empty (falls back to "item")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NON_WORD.sub("-", ascii_text.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or "item"


def with_suffix(base: str, n: int) -> str:
    """The n-th candidate for a taken slug: base, base-2, base-3..."""
    if n <= 1:
        return base
    suffix = f"-{n}"
    return base[: MAX_SLUG - len(suffix)].rstrip("-") + suffix
