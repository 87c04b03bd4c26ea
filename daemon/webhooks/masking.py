"""Configured secrets masked by value in what is stored of a webhook (pure).

Removing the known keys (Datto's `state`, Syncro's property blobs) is not enough: a sender
can put a secret anywhere (a list around the alert, a custom field, a URL with `?token=`),
and whatever is stored is shown by the API, the console and the database. Every string of
the JSON, keys included, has each secret replaced by `MASK`, raw or percent-encoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "********"


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as it may appear in text: raw, and percent-encoded as URLs carry it
    (either case of hex digits), longest first so a longer form is masked whole."""
    return _forms_of(tuple(secrets))


@lru_cache(maxsize=8)  # the configured secrets: the same few on every request
def _forms_of(secrets: tuple[str, ...]) -> tuple[str, ...]:
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for encoded in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret)):
            forms.update((encoded, encoded.lower() if "%" in encoded else encoded))
            forms.add(_upper_hex(encoded))
    return tuple(sorted(forms, key=len, reverse=True))


def _upper_hex(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].upper() + p[2:] for p in parts[1:])


def mask_text(text: str, secrets: tuple[str, ...], forms: tuple[str, ...]) -> str:
    """`text` with every form of every secret replaced by `MASK`."""
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    if "%" in text or "+" in text:
        # A spelling the forms miss (some characters encoded, others not): mask the decoded
        # text, which then is what is stored.
        for decoded in {unquote(text), unquote_plus(text)}:
            if any(secret in decoded for secret in secrets):
                return mask_text(decoded, secrets, forms)
    return text


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (parsed JSON) with every configured secret masked in every string and key.
    Iterative, so it needs no recursion whatever the depth."""
    plain = tuple(s for s in secrets if s)
    if not plain:
        return value
    forms = secret_forms(plain)
    root: list[Any] = [value]
    # (container, key or index) slots still to visit.
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, slot = pending.pop()
        item = container[slot]
        if isinstance(item, str):
            container[slot] = mask_text(item, plain, forms)
        elif isinstance(item, list):
            copy = list(item)
            container[slot] = copy
            pending.extend((copy, index) for index in range(len(copy)))
        elif isinstance(item, dict):
            copy_of = {mask_text(key, plain, forms): entry for key, entry in item.items()}
            container[slot] = copy_of
            pending.extend((copy_of, key) for key in copy_of)
    return root[0]
