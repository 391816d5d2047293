"""Every Redis key name the relay uses, in one place; the Lua scripts get them from here.

All keys live under one prefix, in one Redis (the scripts touch several keys at once, so the
store needs a single Redis, not a cluster). What each key holds is listed in relay/store/store.py.
"""

from __future__ import annotations

PREFIX = "vr:"

# Keys of which there is one.
DUE = PREFIX + "due"
OUTBOXES = PREFIX + "outboxes"
FINISHED = PREFIX + "finished"
ACTIVE = PREFIX + "active"  # hash: owner -> how many active subscriptions it holds
DURATIONS = PREFIX + "durations"
MSG_SEQ = PREFIX + "msg:seq"
RL_WINDOW = PREFIX + "rl:window"
RL_PACE = PREFIX + "rl:pace"
RL_SEQ = PREFIX + "rl:seq"
RL_CAP = PREFIX + "rl:cap"
PAUSE = PREFIX + "pause"
FIRST_LOOKS = PREFIX + "firstlooks"  # hash: owner -> last first look leased (fair turns)
UPSTREAM_UNAUTHORIZED = PREFIX + "upstream:unauthorized"
UPSTREAM_UNREACHABLE = PREFIX + "upstream:unreachable"
RATE_LIMITED = PREFIX + "upstream:429s"  # zset: when upstream answered 429
STREAMS = PREFIX + "streams"  # jobs followed on a stream, by when their stream lease ends
STREAM_OFF = PREFIX + "stream:off"  # set (why) while the upstream is known not to stream
HINT_SEEN = PREFIX + "hint:"  # hint:{digest}: a Varg webhook already taken (replays)
DELIVERY_QUEUE = PREFIX + "deliveries"  # arq's queue of delivery chains

# Keys of which there is one per record: the prefix, then the record's id.
PER_RECORD = {
    "sub": PREFIX + "sub:",  # a subscription (hash); sub:{sid}:{field} a long field
    "owner": PREFIX + "owner:",  # an owner's subscription ids (zset)
    "jobsubs": PREFIX + "jobsubs:",  # a job's subscriptions and dedupe index (hash)
    "watch": PREFIX + "watch:",  # the relay's view of a job (hash)
    "job": PREFIX + "job:",  # the job JSON as last seen (string)
    "msg": PREFIX + "msg:",  # a delivery (hash)
    "attempts": PREFIX + "attempts:",  # a delivery's attempts (list)
    "outbox": PREFIX + "outbox:",  # a subscription's undelivered events (list)
    "msgs": PREFIX + "msgs:",  # every event of a subscription (list)
}


def sub(sid: str) -> str:
    return PER_RECORD["sub"] + sid


def spilled(sid: str, field: str) -> str:
    """A subscription's url or metadata, when too long for its hash."""
    return f"{sub(sid)}:{field}"


def owner(name: str) -> str:
    return PER_RECORD["owner"] + name


def jobsubs(job_id: str) -> str:
    return PER_RECORD["jobsubs"] + job_id


def watch(job_id: str) -> str:
    return PER_RECORD["watch"] + job_id


def job(job_id: str) -> str:
    return PER_RECORD["job"] + job_id


def msg(mid: str) -> str:
    return PER_RECORD["msg"] + mid


def attempts(mid: str) -> str:
    return PER_RECORD["attempts"] + mid


def outbox(sid: str) -> str:
    return PER_RECORD["outbox"] + sid


def msgs(sid: str) -> str:
    return PER_RECORD["msgs"] + sid


# The fixed keys the scripts use by name (K.finished, K.msg_seq, ...).
LUA_FIXED = {
    "finished": FINISHED, "active": ACTIVE, "msg_seq": MSG_SEQ, "rl_seq": RL_SEQ, "rl_cap": RL_CAP,
    "streams": STREAMS, "stream_off": STREAM_OFF, "hint_seen": HINT_SEEN, "firstlooks": FIRST_LOOKS,
}
