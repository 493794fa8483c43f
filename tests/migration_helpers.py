"""Helpers of data-migration tests: rows written with today's models, copied into a database at an older revision."""

from __future__ import annotations

from sqlalchemy import Engine, column, inspect, select
from sqlalchemy import table as bare_table

from models.base import Base


def copy_into_older_schema(source: Engine, target: Engine) -> None:
    """Copy every row of `source` (at head) into `target` (at an older revision): the tables and columns it has.

    Data-migration tests build the data an old release wrote with today's models and factories, then copy it
    into a database migrated only as far as that release, so a later column does not break an older test.
    """
    found = inspect(target)
    tables = set(found.get_table_names())
    with source.connect() as reader, target.begin() as writer:
        for table in Base.metadata.sorted_tables:
            if table.name not in tables:
                continue
            columns = {column["name"] for column in found.get_columns(table.name)}
            rows = [
                {name: value for name, value in row.items() if name in columns}
                for row in reader.execute(select(table)).mappings()
            ]
            if rows:
                # A bare table of the columns it has: the models' defaults would name later columns in the INSERT.
                older = bare_table(table.name, *(column(name, table.c[name].type) for name in sorted(columns)))
                writer.execute(older.insert(), rows)
