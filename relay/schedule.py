"""When to poll a job next: spend polls where a change is likely."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    not_found_grace: float
    min_interval: float
    max_interval: float


# Typical run time in seconds by kind of model, until a model has history of its own.
PRIOR_SECONDS = {"image": 10.0, "speech": 20.0, "music": 60.0, "video": 120.0}
DEFAULT_PRIOR = 60.0
# Most specific output first: "kling-video/image-to-video" is a video, "elevenlabs:music" music.
_KIND_HINTS = {
    "video": ("video", "kling", "veo", "sora", "wan", "hailuo", "runway", "luma", "seedance"),
    "music": ("music", "suno", "udio", "song", "sfx", "audio"),
    "speech": ("tts", "speech", "voice", "eleven", "whisper"),
    "image": ("flux", "image", "sdxl", "imagen", "recraft", "ideogram", "seedream", "nano-banana"),
}


def model_kind(model: str) -> str | None:
    name = model.lower()
    for kind, hints in _KIND_HINTS.items():
        if any(hint in name for hint in hints):
            return kind
    return None


def prior_seconds(model: str) -> float:
    kind = model_kind(model)
    return PRIOR_SECONDS[kind] if kind else DEFAULT_PRIOR


class PollPolicy:
    """Poll about ten times over a job's expected run, then slow down as it ages."""

    def next_delay(self, model: str, status: str, age: float, limits: Limits) -> float:
        expected = prior_seconds(model)
        delay = max(expected, age) / 10
        return min(limits.max_interval, max(limits.min_interval, delay))
