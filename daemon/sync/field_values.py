"""The sync's field values: an RMM field's raw value as the kind its mapping asks for
(text, date, checkbox, dropdown), and the mapped values of one record (`map_fields`).

Pure functions, no I/O; the listings (daemon.sync.listings) call them on each record read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from daemon.config.sync_sections import FieldMapping
from daemon.sync.records import ASSET_COLUMNS, MAX_NAME, MappedValue


def convert(kind: str, raw: Any, dropdown_labels: Mapping[str, str] | None = None) -> Any:
    """A raw RMM field value as the mapping's kind: text (stripped str), date (ISO date),
    checkbox (bool; Syncro's "1"), dropdown (the option's label). Empty -> None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if kind == "checkbox":
        return str(raw).strip().lower() in ("1", "true", "yes", "on", "checked")
    if kind == "date":
        return parse_date(raw)
    if kind == "dropdown":
        return (dropdown_labels or {}).get(str(raw).strip(), str(raw).strip())
    return str(raw).strip()


_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d")


def parse_date(raw: Any) -> str | None:
    """ISO date (YYYY-MM-DD) of an epoch-ms number, an ISO date-time or a common date
    format; None when it is none of these."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw / 1000, UTC).date().isoformat()
    text = str(raw).strip()
    if text.isdigit() and len(text) >= 11:  # epoch milliseconds as a string
        return datetime.fromtimestamp(int(text) / 1000, UTC).date().isoformat()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        pass
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    return None


def kind_of(field_type: str | None) -> str:
    """The mapping kind of a Syncro custom field type as /settings names it (the names vary:
    "date", "date_field", "check_box", "select_box", "dropdown", "text_area"...)."""
    name = (field_type or "").lower()
    if "date" in name:
        return "date"
    if "check" in name:
        return "checkbox"
    if "select" in name or "drop" in name:
        return "dropdown"
    if "area" in name:
        return "textarea"
    return "text"


def map_fields(mappings: Iterable[FieldMapping], core: Mapping[str, Any],
               custom: Mapping[str, Any], udf: Mapping[str, Any],
               kinds: Mapping[str, str], dropdowns: Mapping[str, Mapping[str, str]]
               ) -> tuple[MappedValue, ...]:
    """The mapped values of one record: `core` its own fields, `custom` its custom fields by
    name (Syncro), `udf` its UDFs (Datto, "udf1"...), `kinds` Syncro's field kinds by name,
    `dropdowns` the option labels by field name."""
    values = []
    for mapping in mappings:
        if mapping.custom is not None:
            raw = custom.get(mapping.custom)
            kind = mapping.kind or kinds.get(mapping.custom, "text")
            labels = dropdowns.get(mapping.custom)
        elif mapping.udf is not None:
            raw, kind, labels = udf.get(f"udf{mapping.udf}"), mapping.kind or "text", None
        else:
            assert mapping.core is not None
            raw, kind, labels = core.get(mapping.core), mapping.kind or "text", None
        value = convert(kind, raw, labels)
        if isinstance(value, str):
            value = value[:MAX_NAME] if mapping.field in ASSET_COLUMNS else value[:4000]
        values.append(MappedValue(mapping.field, value, mapping.only_when_empty))
    return tuple(values)
