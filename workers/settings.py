"""arq's entry point: `arq workers.WorkerSettings` (or `arq workers.settings.WorkerSettings`).

The class is built from the environment when arq asks for it, not when the module is imported.
What the worker does lives in `relay/worker.py`.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        import os

        from config import load_settings
        from relay.worker import build_worker_settings

        return build_worker_settings(load_settings(os.environ))
    raise AttributeError(name)
