"""A worker in a process of its own, for tests that kill it in the middle of a send.

Run as ``python -m tests.worker_process <temporal address> <task queue> <database url>``;
provider settings come from the environment, as for ``worker.py``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from receivables.cases import connect
from receivables.settings import Settings, TemporalSettings
from receivables.store import make_engine
from worker import build_worker

READY = "worker polling"
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates" / "messages"


async def serve(address: str, task_queue: str, database_url: str) -> None:
    """Poll the task queue until the process is killed."""
    client = await connect(TemporalSettings(address=address))
    settings = Settings(templates_dir=TEMPLATES_DIR)
    worker = build_worker(
        client, make_engine(database_url), settings, task_queue=task_queue
    )
    async with worker:
        print(READY, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:4]))
