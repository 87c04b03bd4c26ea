"""Sections of the sync (daemon.sync): `[sync]`, `[sync.syncro]`, `[sync.datto]`: what the
import writes, and how it matches."""

from __future__ import annotations

from typing import Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from daemon.config.base import Section

DEFAULT_MATCH_EXCLUSIONS = ("", "none", "n/a", "na", "null", "unknown", "0",
                            "to be filled by o.e.m.", "default string",
                            "system serial number", "not specified")


class LocalSiteRef(Section):
    """An existing alertd customer (by exact name) and optionally one of its sites (by name;
    default: its first site)."""

    customer: str = Field(min_length=1)
    site: str | None = None


class FieldMapping(Section):
    """One asset field filled from the RMM: `field` (an alertd asset field: `serial`, `name`,
    or any other key, kept in the asset's fields) <- exactly one of `core` (a field of the
    RMM's record, e.g. `asset_serial`, `warrantyDate`), `custom` (a Syncro custom field by its
    exact name) or `udf` (a Datto UDF number)."""

    field: str = Field(min_length=1, max_length=64)
    core: str | None = None
    custom: str | None = None
    udf: int | None = Field(default=None, ge=1, le=300)
    # text | textarea | date | checkbox | dropdown; default: the kind Syncro's /settings names
    # for a custom field, text otherwise.
    kind: Literal["text", "textarea", "date", "checkbox", "dropdown"] | None = None
    only_when_empty: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FieldMapping:
        given = [name for name in ("core", "custom", "udf") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of core, custom or udf")
        if self.field.endswith("_id") or self.field in ("id", "fields", "active"):
            raise ValueError(f"field {self.field!r} is set by the sync itself; map into "
                             "serial, name or a field name of your own")
        return self


class SyncSourceCommon(Section):
    # What the scheduled sync imports (off until switched on; `alertd sync --customers
    # --assets` can import either by hand).
    customers: bool = False  # Syncro customers and contacts; Datto sites
    assets: bool = False  # Syncro assets; Datto devices
    asset_group: str = Field(default="", max_length=255)  # new asset types are created here
    # How an asset without a stored RMM id finds an existing alertd asset: "serial", "name"
    # or "" (never: always create).
    match_field: Literal["serial", "name", ""] = "serial"
    field_mappings: list[FieldMapping] = []


def _mappings_of(source: str, mappings: list[FieldMapping], refused: str) -> None:
    """Refuse a mapping kind the source does not have (Syncro: no UDFs; Datto: no custom
    fields by name)."""
    for mapping in mappings:
        if getattr(mapping, refused) is not None:
            raise ValueError(f"field {mapping.field!r}: {source} has no {refused} fields; use "
                             + ("custom or core" if refused == "udf" else "udf or core"))


class SyncSyncroConfig(SyncSourceCommon):
    asset_group: str = Field(default="Syncro", max_length=255)
    top_level: str = Field(default="", max_length=255)  # created customers get this
    # Syncro customer id -> the alertd customer (and site) it is.
    customer_map: dict[str, LocalSiteRef] = {}
    # Where assets go whose Syncro customer is neither mapped, matched nor imported.
    default_site: LocalSiteRef | None = None
    deactivate_missing: bool = False  # deactivate assets that disappear from Syncro

    @model_validator(mode="after")
    def _syncro_mappings(self) -> SyncSyncroConfig:
        _mappings_of("Syncro", self.field_mappings, "udf")
        return self


class SyncDattoConfig(SyncSourceCommon):
    asset_group: str = Field(default="Datto RMM", max_length=255)
    match_field: Literal["serial", "name", ""] = "name"
    top_level: str = Field(default="", max_length=255)
    # customer_per_site: each Datto site becomes a customer with one site.
    # sites_under_customer: each new Datto site becomes a site of `customer`.
    site_mode: Literal["customer_per_site", "sites_under_customer"] = "customer_per_site"
    customer: str = Field(default="", max_length=255)
    # Datto site uid -> the alertd customer and site it is (several may share a customer).
    site_map: dict[str, LocalSiteRef] = {}
    fetch_serials: bool = False  # one audit call per device without a known serial
    deactivate_deleted: bool = False
    last_user_as_end_user: bool = False

    @model_validator(mode="after")
    def _datto_mappings(self) -> SyncDattoConfig:
        _mappings_of("Datto", self.field_mappings, "custom")
        return self

    @model_validator(mode="after")
    def _customer_for_mode(self) -> SyncDattoConfig:
        if self.site_mode == "sites_under_customer" and not self.customer:
            raise ValueError("site_mode = \"sites_under_customer\" needs customer = \"<name>\"")
        return self


class SyncConfig(Section):
    # A crontab line (minute hour day month weekday, local time) or "off".
    schedule: str = "30 2 * * *"
    site_name: str = Field(default="Main", min_length=1, max_length=255)
    # The end user of alert tickets with neither an asset user nor a customer default contact
    # (Halo's "New Alert User", created on first use); "" (the default) leaves them without.
    fallback_end_user: str = Field(default="", max_length=255)
    match_exclusions: list[str] = list(DEFAULT_MATCH_EXCLUSIONS)
    syncro: SyncSyncroConfig = SyncSyncroConfig()
    datto: SyncDattoConfig = SyncDattoConfig()

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        if value != "off":
            try:
                CronTrigger.from_crontab(value)
            except ValueError as err:
                raise ValueError(f"expected a crontab line such as \"30 2 * * *\" or "
                                 f"\"off\": {err}") from None
        return value

