"""arq's entry point: `arq workers.WorkerSettings` (or `arq workers.settings.WorkerSettings`).

The class is built from the environment when arq asks for it, not when the module is imported.
What the worker does lives in `relay/worker.py`. A setting that is wrong, or a Redis that does
not answer, stops arq here with one line naming the cause, as `varg-relay worker` does.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        import os

        from config import SettingsError, load_settings
        from relay.preflight import StartupError, check_redis
        from relay.worker import build_worker_settings

        try:
            settings = load_settings(os.environ)
            settings.require("signing_secrets", "varg_api_key")
            check_redis(settings.redis_url)
        except (SettingsError, StartupError) as exc:
            raise SystemExit(f"varg-relay: {exc}") from None
        return build_worker_settings(settings)
    raise AttributeError(name)
