"""Statements prepared once per DuckDB connection over Arrow tables swapped between runs
(streamdom/archive/prepared.py): each run reads its own tables, never the first run's."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from streamdom.archive import prepared


def test_each_run_reads_its_own_tables_and_a_new_schema_prepares_again() -> None:
    con = duckdb.connect()
    sql = "SELECT k, sum(v) AS v FROM t_a JOIN t_b USING (k) GROUP BY k ORDER BY k"

    def run(a: pa.Table, b: pa.Table) -> list[tuple]:
        return prepared.execute(con, "t_sum", sql, {"t_a": a, "t_b": b}).fetchall()

    keys = pa.table({"k": ["x", "y"]})
    assert run(pa.table({"k": ["x", "x", "y"], "v": [1, 2, 3]}), keys) == [("x", 3), ("y", 3)]
    assert run(pa.table({"k": ["y"], "v": [10]}), keys) == [("y", 10)]  # not the first run's rows
    assert run(pa.table({"k": pa.array([], pa.string()), "v": pa.array([], pa.int64())}), keys) == []
    # Another type of `v`: prepared again (a statement bound to the old schema would misread it).
    assert run(pa.table({"k": ["x"], "v": [1.5]}), keys) == [("x", 1.5)]
    assert run(pa.table({"k": ["x", "y"], "v": [1, 2]}), pa.table({"k": ["y"]})) == [("y", 2)]
