# One image for every role: `docker run IMAGE worker`, `... simulate`, default `api`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Exact versions, every file checked against its hash (scripts/lock writes requirements.lock).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY relay ./relay
COPY workers ./workers
# The dependencies are in already: install only varg-relay itself, with the locked setuptools.
RUN pip install --no-deps --no-build-isolation . && rm -rf build ./*.egg-info

# A plain (not --system) account: 10001 is above the system range, where useradd would warn.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin relay
USER 10001

EXPOSE 8000 9100
ENTRYPOINT ["varg-relay"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
