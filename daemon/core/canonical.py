"""One canonical JSON form and its digest: identical JSON values, however spaced or ordered,
give the same bytes, so a sender's retry is recognised as the same delivery."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 as is (not \\u-escaped): the bytes alertd stores and hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_sha256(value: Any) -> str:
    """The hex SHA-256 of `canonical_json(value)`."""
    return sha256_hex(canonical_json(value))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
