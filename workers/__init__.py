"""Workers: the poll loop, the delivery chains and the sweeper, run by arq."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `arq workers.WorkerSettings` reads the environment here, when asked, not at import.
    if name == "WorkerSettings":
        import os

        from config import load_settings
        from workers.settings import build_worker_settings

        return build_worker_settings(load_settings(os.environ))
    raise AttributeError(name)
