"""The README's DuckDB queries run as written against data a real server wrote."""

from __future__ import annotations

import os
import re

import duckdb

from streamdom.testing import ROOT, InProcessServer
from tests.helpers import event, record, session_events


def readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def test_readme_queries(app: InProcessServer) -> None:
    evs = session_events(10, href="http://shop.test/cart")
    clicks = [event(3, 1_700_000_000_100 + i, source=2, type=2, id=5, x=1, y=1) for i in range(3)]

    record(app.ws, "analyst", evs + clicks)
    app.stop()
    queries = readme_queries()
    assert len(queries) == 3
    cwd = os.getcwd()
    os.chdir(app.data_dir.parent)  # the queries say 'data/...'
    try:
        per_day, durations, per_page = (duckdb.sql(q).fetchall() for q in queries)
    finally:
        os.chdir(cwd)
    assert len(per_day) == 1 and per_day[0][1:] == (1, 13)
    assert durations[0][0] == "analyst" and durations[0][2] == 13
    assert durations[0][1] == (1_700_000_000_102 - 1_700_000_000_000) / 1000
    n_clicks = sum(1 for e in evs + clicks
                   if e["type"] == 3 and e["data"]["source"] == 2 and e["data"]["type"] == 2)
    assert n_clicks == 11
    assert per_page == [("http://app.test/", n_clicks)]  # the hello's URL (the test recorder's)
