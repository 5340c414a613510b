"""Reading the configuration of another loader's load log: what it maps, and each mistake
refused naming the variable to fix; the queries it composes quote what they are given."""

from __future__ import annotations

import pytest

from ledgerflow.core import ConfigError
from ledgerflow.feeds.load_logs import (
    LoadLogMapping,
    load_log_query,
    load_pairs_query,
    parse_load_log_mapping,
)

TABLE = "LEDGERFLOW_FEEDS_LOAD_LOG_TABLE"
COLUMNS = "LEDGERFLOW_FEEDS_LOAD_LOG_COLUMNS"
SUCCEEDED = "LEDGERFLOW_FEEDS_LOAD_LOG_SUCCEEDED"
FULL = (
    "source=job_name,table=target_table,rows=rows_loaded,status=state,"
    "started_at=start_ts,finished_at=end_ts"
)


def mapping(
    table: str = "etl.job_runs", columns: str = FULL, ok: str = "SUCCESS"
) -> LoadLogMapping:
    parsed = parse_load_log_mapping(table, columns, ok)
    assert parsed is not None
    return parsed


def test_every_column_of_the_example_is_mapped() -> None:
    assert mapping() == LoadLogMapping(
        table=("etl", "job_runs"),
        source="job_name",
        status="state",
        finished_at="end_ts",
        succeeded=("SUCCESS",),
        table_column="target_table",
        rows="rows_loaded",
        started_at="start_ts",
    )


def test_the_loaded_table_may_be_a_schema_column_and_a_table_column() -> None:
    parsed = mapping(
        columns=" finished_at = end_ts , schema=target_schema,table_name=target_table,"
        "status=state,source=job_name,",
        ok=" SUCCESS, WARNING ,SUCCESS",
    )
    assert (parsed.table_column, parsed.schema, parsed.table_name) == (
        None,
        "target_schema",
        "target_table",
    )
    assert (parsed.rows, parsed.started_at) == (None, None)  # both may be left out
    assert parsed.succeeded == ("SUCCESS", "WARNING")  # trimmed, each once


@pytest.mark.parametrize("table", [None, "", "   "])
def test_no_table_is_no_mapping(table: str | None) -> None:
    assert parse_load_log_mapping(table, "", "") is None


def test_names_are_read_as_sql_reads_them() -> None:
    parsed = mapping(
        table='ETL."Job Runs"',
        columns='source=Job_Name,table="Target.Table",status="a""b",finished_at=END_TS',
    )
    assert parsed.table == ("etl", "Job Runs")  # unquoted: lower case; quoted: as written
    assert parsed.label == "etl.Job Runs"
    assert (parsed.source, parsed.table_column, parsed.status, parsed.finished_at) == (
        "job_name",
        "Target.Table",
        'a"b',
        "end_ts",
    )


@pytest.mark.parametrize(
    ("table", "columns", "ok", "variable", "says"),
    [
        ("job_runs", FULL, "SUCCESS", TABLE, "not schema.table"),
        ("etl.job-runs", FULL, "SUCCESS", TABLE, "not schema.table"),
        ("etl.job_runs.x", FULL, "SUCCESS", TABLE, "not schema.table"),
        (f"etl.{'x' * 64}", FULL, "SUCCESS", TABLE, "at most 63 bytes"),
        ("etl.job_runs", "", "SUCCESS", COLUMNS, "missing source, table"),
        ("etl.job_runs", f"{FULL},owner=who", "SUCCESS", COLUMNS, "unknown key 'owner'"),
        ("etl.job_runs", f"{FULL},source=other", "SUCCESS", COLUMNS, "source given twice"),
        ("etl.job_runs", FULL.replace("source=", "sorce="), "SUCCESS", COLUMNS, "'sorce'"),
        ("etl.job_runs", "table=t,status=s,finished_at=f", "SUCCESS", COLUMNS, "missing source"),
        (
            "etl.job_runs",
            "source=j,status=s,finished_at=f",
            "SUCCESS",
            COLUMNS,
            "missing table (or schema and table_name)",
        ),
        (
            "etl.job_runs",
            "source=j,schema=s,status=s,finished_at=f",
            "SUCCESS",
            COLUMNS,
            "missing table (or schema and table_name)",
        ),
        ("etl.job_runs", "source=j,table=t,finished_at=f", "SUCCESS", COLUMNS, "missing status"),
        ("etl.job_runs", "source=j,table=t,status=s", "SUCCESS", COLUMNS, "missing finished_at"),
        (
            "etl.job_runs",
            f"{FULL},schema=s,table_name=t",
            "SUCCESS",
            COLUMNS,
            "table, or schema and table_name, not both",
        ),
        ("etl.job_runs", FULL.replace("job_name", "job-name"), "SUCCESS", COLUMNS, "not a name"),
        ("etl.job_runs", FULL.replace("job_name", "1st"), "SUCCESS", COLUMNS, "not a name"),
        ("etl.job_runs", FULL.replace("job_name", "job name"), "SUCCESS", COLUMNS, "not a name"),
        ("etl.job_runs", FULL.replace("job_name", '""'), "SUCCESS", COLUMNS, "key=column"),
        ("etl.job_runs", FULL.replace("=job_name", "="), "SUCCESS", COLUMNS, "names no column"),
        ("etl.job_runs", FULL.replace("=job_name", ""), "SUCCESS", COLUMNS, "key=column"),
        ("etl.job_runs", FULL.replace("job_name", '"job'), "SUCCESS", COLUMNS, "key=column"),
        ("etl.job_runs", FULL, "", SUCCEEDED, "status values meaning success"),
        ("etl.job_runs", FULL, " , ,", SUCCEEDED, "status values meaning success"),
    ],
)
def test_each_mistake_names_its_variable(
    table: str, columns: str, ok: str, variable: str, says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_load_log_mapping(table, columns, ok)
    assert str(refused.value).startswith(f"{variable}: ")
    assert says in str(refused.value)


def made(**loaded: str) -> LoadLogMapping:
    """A mapping of etl.runs with the loaded table's columns ``loaded``."""
    return LoadLogMapping(("etl", "runs"), "source", "status", "finished_at", ("OK",), **loaded)


def test_a_mapping_needs_one_way_to_name_the_loaded_table_and_a_success() -> None:
    assert made(table_column="t").table_column == "t"
    assert made(schema="s", table_name="n").schema == "s"
    for loaded in ({}, {"table_column": "t", "schema": "s", "table_name": "n"}, {"schema": "s"}):
        with pytest.raises(ValueError, match="schema and name columns"):
            made(**loaded)
    with pytest.raises(ValueError, match="at least one status"):
        LoadLogMapping(("etl", "runs"), "s", "st", "f", (), table_column="t")


def test_the_queries_quote_names_as_identifiers_and_statuses_as_literals() -> None:
    odd = mapping(
        table='etl."runs; DROP TABLE x"',
        columns='source="a"" OR 1=1 --",table=t,status=state,finished_at=end_ts',
        ok="it's done,OK",
    )
    text = load_log_query(odd).as_string(None)
    assert 'FROM "etl"."runs; DROP TABLE x"' in text
    assert '"a"" OR 1=1 --"::text AS source' in text
    assert "\"state\"::text IN ('it''s done', 'OK')" in text
    assert "NULL::bigint AS row_count" in text  # no rows column
    assert '"end_ts"::timestamptz AS started_at' in text  # no start: the finish stands in
    split = mapping(columns="source=j,schema=sc,table_name=tn,status=s,finished_at=f")
    assert '"sc"::text || \'.\' || "tn"::text AS table_name' in load_log_query(split).as_string(
        None
    )
    pairs = load_pairs_query(mapping()).as_string(None)
    assert "min(l.finished_at) AS first_load_at" in pairs and '"etl"."job_runs"' in pairs
    assert "WHERE false" in load_pairs_query(None).as_string(None)
