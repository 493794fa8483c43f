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
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(TARGET)], check=False)
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
