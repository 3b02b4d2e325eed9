# helpdesk-bot: one image for the web server, the outbox worker and migrations.
#   docker build -t helpdesk-bot .
#   docker run --rm helpdesk-bot --help           # every subcommand
#   docker run --rm --env-file .env helpdesk-bot check-config
# See compose.yaml for PostgreSQL + web + worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user; /data holds the SQLite file when no DATABASE_URL is given.
RUN groupadd --system --gid 10001 helpdesk \
    && useradd --system --uid 10001 --gid helpdesk --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin helpdesk \
    && mkdir -p /data \
    && chown helpdesk:helpdesk /data

WORKDIR /app

# A font with CJK and Hangul glyphs for the report's chart (client names like 東京支社 or 서울
# 지점): pip's matplotlib brings only DejaVu Sans, which has none (about 5 MB installed).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# Dependencies and the code in one layer: the packages are small and all pure Python or wheels.
COPY pyproject.toml README.md* ./
COPY bot ./bot
COPY handlers ./handlers
COPY cards ./cards
COPY storage ./storage
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

# App manifests for Slack and the Teams package template + icons (python -m bot teams-package).
COPY slack ./slack
COPY teams ./teams

USER 10001:10001

# MPLCONFIGDIR: matplotlib (the report's chart) keeps its font cache there; /app is read-only.
ENV HOST=0.0.0.0 \
    PORT=3978 \
    DATABASE_URL=sqlite+aiosqlite:////data/helpdesk.db \
    MPLCONFIGDIR=/tmp/matplotlib

EXPOSE 3978

# 200 from /healthz means the server answers and the database is reachable (503 otherwise).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3978'), timeout=4)"]

ENTRYPOINT ["python", "-m", "bot"]
CMD ["serve"]
