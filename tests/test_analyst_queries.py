"""The README's DuckDB queries run as written against data a real server wrote: locally, and
on S3 (SeaweedFS) with a PostgreSQL catalog, with `data/` replaced as the README says."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import duckdb

from streamdom.archive.lake import _libpq
from streamdom.testing import ROOT, InProcessServer, ServerProcess
from streamdom.testing_archive import S3_KEY_ID, S3_SECRET, SeaweedS3
from tests.helpers import TEST_SERVER_ARGS, event, record, session_events


def readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def record_sample(server: ServerProcess | InProcessServer) -> list[dict]:
    evs = session_events(10, href="http://shop.test/cart")
    clicks = [event(3, 1_700_000_000_100 + i, source=2, type=2, id=5, x=1, y=1) for i in range(3)]
    record(server.ws, "analyst", evs + clicks)
    server.stop()
    return evs + clicks


def check(results: list[list[tuple]], recorded: list[dict]) -> None:
    per_day, durations, per_page = results
    assert len(per_day) == 1 and per_day[0][1:] == (1, 13)
    assert durations[0][0] == "analyst" and durations[0][2] == 13
    assert durations[0][1] == (1_700_000_000_102 - 1_700_000_000_000) / 1000
    n_clicks = sum(1 for e in recorded if e["type"] == 3 and e["data"]["source"] == 2 and e["data"]["type"] == 2)
    assert n_clicks == 11
    assert per_page == [("http://app.test/", n_clicks)]  # the hello's URL (the test recorder's)


def test_readme_queries_on_the_local_archive(app: InProcessServer) -> None:
    recorded = record_sample(app)
    queries = readme_queries()
    assert len(queries) == 4  # three over globs, one over the attached catalog
    cwd = os.getcwd()
    os.chdir(app.data_dir.parent)  # the queries say 'data/...'
    try:
        check([duckdb.sql(q).fetchall() for q in queries[:3]], recorded)
        attached = duckdb.connect().execute(queries[3]).fetchall()
    finally:
        os.chdir(cwd)
    assert [row[1:] for row in attached] == [(1, 13)]


def test_readme_queries_on_an_s3_archive_with_a_postgresql_catalog(
        tmp_path: Path, seaweed: SeaweedS3, pg_url: str) -> None:
    prefix = f"s3://streamdom/readme-{uuid.uuid4().hex[:8]}/"
    server = ServerProcess(tmp_path / "data", *TEST_SERVER_ARGS, "--archive", prefix, "--s3-endpoint", seaweed.endpoint,
                           "--catalog", pg_url, env=seaweed.env()).start()
    try:
        recorded = record_sample(server)
    finally:
        server.stop()
    assert not list((tmp_path / "data").glob("main/*/*/*.parquet")), "the Parquet went to S3"
    assert S3_SECRET not in server.logs()
    con = duckdb.connect()
    con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{S3_KEY_ID}', SECRET '{S3_SECRET}',
                    ENDPOINT '127.0.0.1:{seaweed.port}', URL_STYLE 'path', USE_SSL false)""")
    queries = readme_queries()
    check([con.execute(q.replace("data/", prefix)).fetchall() for q in queries[:3]], recorded)
    attach = queries[3].replace("ducklake:sqlite:data/catalog.sqlite", "ducklake:postgres:" + _libpq(pg_url))
    assert [row[1:] for row in con.execute(attach).fetchall()] == [(1, 13)]
