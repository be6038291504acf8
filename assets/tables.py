"""Rows of the core as Dagster table metadata (`dg.MetadataValue.table`)."""

from collections.abc import Iterable, Mapping

import dagster as dg


def table(rows: Iterable[Mapping], columns: Mapping[str, str], digits: int = 2) -> dg.TableMetadataValue:
    """`rows` (dicts) as a table of `columns` (name -> type: string, int, float or bool);
    floats rounded to `digits`, other keys of the rows left out."""

    def value(v):
        if isinstance(v, float):
            return round(v, digits)
        return v if v is None or isinstance(v, (str, int, bool)) else str(v)

    return dg.MetadataValue.table(
        records=[dg.TableRecord({name: value(row.get(name)) for name in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()]),
    )
