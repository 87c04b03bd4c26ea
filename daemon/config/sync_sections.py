"""Sections of the sync (daemon.sync): `[sync]`, `[sync.syncro]`, `[sync.datto]`: what the
import writes, and how it matches."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, field

from daemon.config.base import FieldError, Section

Name = Annotated[str, Meta(max_length=255)]

DEFAULT_MATCH_EXCLUSIONS = ("", "none", "n/a", "na", "null", "unknown", "0",
                            "to be filled by o.e.m.", "default string",
                            "system serial number", "not specified")


class LocalSiteRef(Section, kw_only=True):
    """An existing alertd customer (by exact name) and optionally one of its sites (by name;
    default: its first site)."""

    customer: Annotated[str, Meta(min_length=1)]
    site: str | None = None


class FieldMapping(Section, kw_only=True):
    """One asset field filled from the RMM: `field` (an alertd asset field: `serial`, `name`,
    or any other key, kept in the asset's fields) <- exactly one of `core` (a field of the
    RMM's record, e.g. `asset_serial`, `warrantyDate`), `custom` (a Syncro custom field by its
    exact name) or `udf` (a Datto UDF number)."""

    field: Annotated[str, Meta(min_length=1, max_length=64)]
    core: str | None = None
    custom: str | None = None
    udf: Annotated[int, Meta(ge=1, le=300)] | None = None
    # text | textarea | date | checkbox | dropdown; default: the kind Syncro's /settings names
    # for a custom field, text otherwise.
    kind: Literal["text", "textarea", "date", "checkbox", "dropdown"] | None = None
    only_when_empty: bool = False

    def __post_init__(self) -> None:
        given = [name for name in ("core", "custom", "udf") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of core, custom or udf")
        if self.field.endswith("_id") or self.field in ("id", "fields", "active"):
            raise ValueError(f"field {self.field!r} is set by the sync itself; map into "
                             "serial, name or a field name of your own")


class SyncSourceCommon(Section, kw_only=True):
    # What the scheduled sync imports (off until switched on; `alertd sync --customers
    # --assets` can import either by hand).
    customers: bool = False  # Syncro customers and contacts; Datto sites
    assets: bool = False  # Syncro assets; Datto devices
    asset_group: Name = ""  # new asset types are created here
    # How an asset without a stored RMM id finds an existing alertd asset: "serial", "name"
    # or "" (never: always create).
    match_field: Literal["serial", "name", ""] = "serial"
    field_mappings: list[FieldMapping] = []


def _mappings_of(source: str, mappings: list[FieldMapping], refused: str) -> None:
    """Refuse a mapping kind the source does not have (Syncro: no UDFs; Datto: no custom
    fields by name)."""
    for mapping in mappings:
        if getattr(mapping, refused) is not None:
            raise FieldError("field_mappings", f"field {mapping.field!r}: {source} has no "
                             f"{refused} fields; use "
                             + ("custom or core" if refused == "udf" else "udf or core"))


class SyncSyncroConfig(SyncSourceCommon, kw_only=True):
    asset_group: Name = "Syncro"
    top_level: Name = ""  # created customers get this
    # Syncro customer id -> the alertd customer (and site) it is.
    customer_map: dict[str, LocalSiteRef] = {}
    # Where assets go whose Syncro customer is neither mapped, matched nor imported.
    default_site: LocalSiteRef | None = None
    deactivate_missing: bool = False  # deactivate assets that disappear from Syncro

    def __post_init__(self) -> None:
        _mappings_of("Syncro", self.field_mappings, "udf")


class SyncDattoConfig(SyncSourceCommon, kw_only=True):
    asset_group: Name = "Datto RMM"
    match_field: Literal["serial", "name", ""] = "name"
    top_level: Name = ""
    # customer_per_site: each Datto site becomes a customer with one site.
    # sites_under_customer: each new Datto site becomes a site of `customer`.
    site_mode: Literal["customer_per_site", "sites_under_customer"] = "customer_per_site"
    customer: Name = ""
    # Datto site uid -> the alertd customer and site it is (several may share a customer).
    site_map: dict[str, LocalSiteRef] = {}
    fetch_serials: bool = False  # one audit call per device without a known serial
    deactivate_deleted: bool = False
    last_user_as_end_user: bool = False

    def __post_init__(self) -> None:
        _mappings_of("Datto", self.field_mappings, "custom")
        if self.site_mode == "sites_under_customer" and not self.customer:
            raise ValueError("site_mode = \"sites_under_customer\" needs customer = \"<name>\"")


class SyncConfig(Section, kw_only=True):
    # A crontab line (minute hour day month weekday, local time) or "off".
    schedule: str = "30 2 * * *"
    site_name: Annotated[str, Meta(min_length=1, max_length=255)] = "Main"
    # The end user of alert tickets with neither an asset user nor a customer default contact
    # (Halo's "New Alert User", created on first use); "" (the default) leaves them without.
    fallback_end_user: Name = ""
    match_exclusions: list[str] = field(default_factory=lambda: list(DEFAULT_MATCH_EXCLUSIONS))
    syncro: SyncSyncroConfig = field(default_factory=SyncSyncroConfig)
    datto: SyncDattoConfig = field(default_factory=SyncDattoConfig)

    def __post_init__(self) -> None:
        if self.schedule != "off":
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as err:
                raise FieldError("schedule", "expected a crontab line such as \"30 2 * * *\" "
                                 f"or \"off\": {err}") from None

