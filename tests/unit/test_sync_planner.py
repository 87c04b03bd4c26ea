"""The sync planner (pure, on in-memory indexes): no guessing between same-named customers,
nothing changed that the RMM does not say; field mappings checked when the config loads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daemon.config import Config, ConfigError
from daemon.sync.planner import Planner
from daemon.sync.records import (
    Index,
    LocalAsset,
    LocalCustomer,
    LocalSite,
    PageState,
    Policy,
    UpAsset,
    UpCustomer,
)


def test_planner_never_guesses_and_relinks_a_deactivated_site() -> None:
    index = Index()
    index.customers = {1: LocalCustomer(1, "Acme"), 2: LocalCustomer(2, "Acme"),
                       3: LocalCustomer(3, "Beta")}
    index.sites = {10: LocalSite(10, 3, "Old", active=False), 11: LocalSite(11, 3, "New")}
    index.refs = {("customer", "b"): 3, ("site", "b"): 10}
    planner = Planner(Policy(source="syncro"), index)

    ops, skipped = planner.customer(UpCustomer("a", "Acme"))
    assert ops == [] and skipped is not None and "2 alertd customers have this name" in skipped
    ops, skipped = planner.customer(UpCustomer("b", "Beta"))
    assert skipped is None
    assert [(o.entity, o.action, o.local_id) for o in ops] == [("site", "match", 11)]
    # Two new RMM customers with one name are two alertd customers, not one matched to the
    # other: only customers alertd had before the run are matched by name.
    first, _ = planner.customer(UpCustomer("c1", "Gamma"))
    second, _ = planner.customer(UpCustomer("c2", "Gamma"))
    assert [o.action for o in first if o.entity == "customer"] == ["create"]
    assert [o.action for o in second if o.entity == "customer"] == ["create"]


def test_what_the_rmm_does_not_say_is_left_alone() -> None:
    index = Index(sites={5: LocalSite(5, 1, "Main")}, refs={("site", "s"): 5})
    local = LocalAsset(7, "PC-1", "SN1", 1, 5, asset_type_id=3, end_user_id=4, active=True,
                       fields={})
    planner = Planner(Policy(source="datto"), index)
    ops, skipped = planner.asset(UpAsset("d1", "PC-1", "s", type_name=None),
                                 PageState(by_ref={"d1": local}, by_match={}))
    assert (ops, skipped) == ([], None)  # no type, no user, no serial upstream: no change


@pytest.mark.parametrize(("section", "mapping", "message"), [
    ("syncro", '{ field = "customer_id", core = "customer_id" }', "set by the sync itself"),
    ("syncro", '{ field = "owner", udf = 3 }', "Syncro has no udf fields"),
    ("datto", '{ field = "owner", custom = "Owner" }', "Datto has no custom fields"),
    ("datto", '{ field = "owner", udf = 3, core = "x" }', "exactly one of core, custom or udf"),
])
def test_field_mappings_are_checked(make_config: Callable[..., Config], section: str,
                                    mapping: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(f"[sync.{section}]\nfield_mappings = [{mapping}]\n")
    assert message in str(raised.value.issues[0])
