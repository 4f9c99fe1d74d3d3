# Careline server image. Build: docker build -t careline .   Run: docker run -p 8080:8080 careline
# Not exercised in this workplace (no Docker engine on the build machines).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# No apt packages: aiortc is pure Python, and the av (FFmpeg) and pylibsrtp (libsrtp) wheels
# bundle their native libraries. The sources are installed as a regular (non-editable) package;
# web/ ships inside it as package data.
WORKDIR /tmp/careline-src
COPY pyproject.toml README.md ./
COPY server/ server/
COPY signaling/ signaling/
COPY media/ media/
COPY loadtest/ loadtest/
COPY web/ web/
RUN pip install . \
    && cd / && rm -rf /tmp/careline-src \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin careline \
    && mkdir -p /data && chown careline:careline /data

# Listen on every interface; keep the generated auth-secret and the SQLite file in the volume.
ENV CARELINE_SERVER_HOST=0.0.0.0 \
    CARELINE_SERVER_DATA_DIR=/data

USER careline
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# Liveness only (/readyz also checks the store). Follows CARELINE_SERVER_PORT when it is set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CARELINE_SERVER_PORT', '8080') + '/healthz', timeout=3)"]

# Exec form: careline is PID 1 and handles SIGTERM itself (graceful shutdown within
# server.shutdown_timeout_seconds; give `docker stop` a longer -t than that).
CMD ["careline", "serve"]
