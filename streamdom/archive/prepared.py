"""Statements prepared once per DuckDB connection, over Arrow tables swapped between runs.

Planning the search's expressions (the partial summaries, a page's summaries) took about as long
as running them on a few hundred rows: 2.5-4.5 ms a query, whatever the rows (measured with
EXPLAIN and DuckDB's profiler). A statement prepared over a registered Arrow table stays bound
to that table, so each input is registered as a slot: an object whose Arrow stream DuckDB asks
for at every execution (the PyCapsule protocol), holding the table of the current run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import duckdb
import pyarrow as pa


class _Slot:
    """The table a prepared statement reads under one name, swapped between runs."""

    def __init__(self, schema: pa.Schema) -> None:
        self.table = schema.empty_table()

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        """The current table's Arrow C stream."""
        return self.table.__arrow_c_stream__(requested_schema)


@dataclass
class _Statement:
    sql: str
    schemas: tuple[pa.Schema, ...]
    slots: dict[str, _Slot]


_statements: WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, _Statement]] = WeakKeyDictionary()


def execute(con: duckdb.DuckDBPyConnection, name: str, sql: str, tables: Mapping[str, pa.Table]
            ) -> duckdb.DuckDBPyConnection:
    """Run `sql`, which reads `tables` by their names, prepared as `name` on this connection the
    first time (and again if the SQL or the tables' schemas change); fetch from the result.

    A name (statement's and tables') belongs to one statement; a connection is one thread's.
    """
    per_con = _statements.setdefault(con, {})
    schemas = tuple(t.schema for t in tables.values())
    st = per_con.get(name)
    if st is None or st.sql != sql or st.schemas != schemas:
        if st is not None:
            con.execute(f"DEALLOCATE {name}")
        st = per_con[name] = _Statement(sql, schemas, {k: _Slot(t.schema) for k, t in tables.items()})
        for k, slot in st.slots.items():
            con.register(k, slot)
        con.execute(f"PREPARE {name} AS {sql}")
    for k, t in tables.items():
        st.slots[k].table = t
    return con.execute(f"EXECUTE {name}")
