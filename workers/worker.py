"""The RQ worker class of every `rq worker` here: it loads what jobs need once, before it forks work horses.

RQ forks a work horse per job. Without this, each horse imports the job modules, configures the SQLAlchemy
mappers and reads the SMS catalogues again — about half a second per job, more than a batch of payments
takes to reconcile. Loaded in the parent, all of it is inherited by every fork (like gunicorn's `--preload`).
What is loaded is then frozen out of the garbage collector (`gc.freeze`): a horse's full collections no longer
walk the hundred thousand objects of the loaded modules (most of their collecting time went there), nor
write to their pages (copied on write after the fork).
Database engines and Redis clients are not created here: `models.db.get_engine` makes a new engine in each
forked process, so no socket is ever shared between jobs.

    rq worker --worker-class workers.worker.PreloadedWorker …
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

from rq import Worker
from sqlalchemy.orm import configure_mappers

# Every module an RQ job of this project runs in (the functions `enqueue` names).
JOB_MODULES = (
    "workers.reconcile",
    "workers.sms",
    "workers.inbound",
    "workers.reminders",
    "workers.clock_jobs",
    "workers.maintenance",
)


def preload() -> None:
    """Import the job modules, configure the ORM mappers and load the SMS catalogues in this process, then move
    everything loaded so far out of the garbage collector's reach (it lives as long as the process)."""
    from models.texts.i18n import LANGUAGES, translations

    for name in JOB_MODULES:
        importlib.import_module(name)
    configure_mappers()
    for language in LANGUAGES:
        translations(language)
    gc.collect()  # nothing collectable is frozen with the rest
    gc.freeze()


class PreloadedWorker(Worker):
    """An RQ `Worker` (a fork per job) whose work horses start with the job modules already loaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        preload()
        super().__init__(*args, **kwargs)
