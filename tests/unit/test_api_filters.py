"""Pure parts of the browse and administration API: filter values, the FTS5 quoting, the
names of the full-text objects, secret masking, the channel health record."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from daemon.http.api_admin import MASK, masked
from daemon.metrics import ChannelHealth
from daemon.store.queries import BadFilter, flag_filter, id_filter, search_filter
from daemon.store.ticket_search import fts5_query, is_search_object


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("0", 0), ("42", 42), ("999999999999999999", 999_999_999_999_999_999)])
def test_id_filter_takes_ascii_digits_that_fit_an_id(raw: str | None, expected: int) -> None:
    assert id_filter("customer_id", raw) == expected


@pytest.mark.parametrize("raw", ["", "-1", "1.0", "0x10", " 1", "\u00b2", "\u0661", "1" * 19])
def test_id_filter_refuses_anything_else_naming_the_filter(raw: str) -> None:
    with pytest.raises(BadFilter, match="'site_id' must be a whole number"):
        id_filter("site_id", raw)


def test_flag_filter() -> None:
    assert (flag_filter("active", None), flag_filter("active", "true"),
            flag_filter("active", "false")) == (None, True, False)
    for raw in ("True", "1", "yes", ""):
        with pytest.raises(BadFilter, match="'active' must be true or false"):
            flag_filter("active", raw)


def test_search_filter_blank_is_no_filter_and_length_is_capped() -> None:
    assert search_filter(None) is None and search_filter(" \t ") is None
    assert search_filter("  disk full ") == "disk full"
    assert search_filter("x" * 200) == "x" * 200
    with pytest.raises(BadFilter, match="at most 200"):
        search_filter("x" * 201)


@pytest.mark.parametrize(("q", "expected"), [
    ("disk full", '"disk" "full"'),
    ('say "hi"', '"say" """hi"""'),
    ("AND OR (", '"AND" "OR" "("'),
    ("summary:disk*", '"summary:disk*"'),
])
def test_fts5_query_quotes_every_word(q: str, expected: str) -> None:
    assert fts5_query(q) == expected


@pytest.mark.parametrize("q", ['"', "AND OR (", "NEAR(a b)", "a:b", "*", "^x", "-", "'",
                               'x" OR "y', "{a b}:c", "\\", "😀"])
def test_no_fts5_syntax_survives_the_quoting(q: str) -> None:
    """FTS5 itself takes every quoted query: it raises for unquoted syntax errors only."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5 (a)")
    connection.execute("INSERT INTO t VALUES ('x y a b c')")
    connection.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts5_query(q),)).fetchall()


def test_search_objects_are_exactly_the_index_and_its_shadow_tables() -> None:
    for name in ("tickets_fts", "tickets_fts_data", "tickets_fts_idx", "tickets_fts_content",
                 "tickets_fts_docsize", "tickets_fts_config", "ix_tickets_fts"):
        assert is_search_object(name), name
    for name in (None, "tickets", "ix_tickets_status", "tickets_fts_other", "ix_tickets_fts2"):
        assert not is_search_object(name), name


def test_masked_replaces_each_secret_in_every_string_of_the_tree() -> None:
    value = {"url": "https://x/api/notify/syncro?token=s%2Fecret", "n": 3, "ok": True,
             "payload": {"state": "s/ecret", "list": ["a s/ecret b", None]}}
    assert masked(value, ["s%2Fecret", "s/ecret"]) == {
        "url": f"https://x/api/notify/syncro?token={MASK}", "n": 3, "ok": True,
        "payload": {"state": MASK, "list": [f"a {MASK} b", None]}}


def test_channel_health_keeps_the_last_error_per_channel() -> None:
    moments = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n) for n in range(10))
    health = ChannelHealth(clock=lambda: next(moments))
    assert health.last_error("smtp") is None
    health.record_error("imap:main", "first")
    health.record_error("imap:main", "second")
    error = health.last_error("imap:main")
    assert error is not None and error.message == "second"
    assert error.at == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert health.uptime_s() == 3.0
