"""Regenerate migrations/versions/*_0001_initial_schema.py from the models.

Used only until the first release is deployed: after that, schema changes get new revisions
(`flask --app app db revision -m "…"`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402

from models.migrate import alembic_config  # noqa: E402

TARGET = ROOT / "migrations" / "versions" / "20261123_0001_initial_schema.py"


def main() -> None:
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/empty.db"
        command.revision(alembic_config(url), message="initial schema", autogenerate=True, rev_id="0001")
    generated = sorted((ROOT / "migrations" / "versions").glob("*_0001_initial_schema.py"))
    for path in generated:
        if path != TARGET:
            path.rename(TARGET)
    add_expression_indexes(TARGET)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(TARGET)], check=False)
    print(f"wrote {TARGET.relative_to(ROOT)}")


def add_expression_indexes(path: Path) -> None:
    """Add the indexes on expressions (`upper(x)`), which autogenerate cannot reflect on SQLite, to the migration."""
    from sqlalchemy import Column
    from sqlalchemy.dialects import sqlite

    import models

    creates, drops = [], []
    for table in models.Base.metadata.sorted_tables:
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if all(isinstance(e, Column) for e in index.expressions):
                continue
            sql = [
                (e if isinstance(e, str) else str(e.compile(dialect=sqlite.dialect()))).replace(f"{table.name}.", "")
                for e in index.expressions
            ]
            expressions = ", ".join(f"sa.text({text!r})" for text in sql)
            name, unique = repr(index.name), index.unique
            creates.append(f"    op.create_index({name}, {table.name!r}, [{expressions}], unique={unique})")
            drops.append(f"    op.drop_index({index.name!r}, table_name={table.name!r})")
    if not creates:
        return
    source = path.read_text()
    end = "    # ### end Alembic commands ###\n"
    upgrade_end = source.index(end)
    downgrade_start = source.index("def downgrade() -> None:\n") + len("def downgrade() -> None:\n")
    comment = "    # Indexes on expressions (added by scripts/refresh_initial_migration.py)\n"
    added_up = comment + "\n".join(creates) + "\n"
    added_down = "\n".join(drops) + "\n"
    source = source[:downgrade_start] + added_down + source[downgrade_start:]
    source = source[:upgrade_end] + added_up + source[upgrade_end:]
    path.write_text(source)


if __name__ == "__main__":
    main()
