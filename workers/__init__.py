"""arq entry points; the worker itself is `relay/worker.py`."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `arq workers.WorkerSettings` reads the environment here, when asked, not at import.
    if name == "WorkerSettings":
        from workers import settings

        return settings.WorkerSettings
    raise AttributeError(name)
