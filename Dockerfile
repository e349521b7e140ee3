# gatekeeper: slim, non-root. Config comes from a mounted file, secrets from the environment:
#   docker run -p 8080:8080 \
#     -v $PWD/config.yaml:/etc/gatekeeper/config.yaml:ro \
#     -e WAITINGROOM_REDIS_URL=redis://redis:6379/0 \
#     -e WAITINGROOM_GATE_COOKIE_KEYS=... -e WAITINGROOM_GATE_PROOF_SECRET=... \
#     gatekeeper --origin http://seats.internal:8000
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatekeeper ./gatekeeper
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WAITINGROOM_CONFIG=/etc/gatekeeper/config.yaml \
    WAITINGROOM_SERVER_HOST=0.0.0.0 \
    WAITINGROOM_SERVER_PORT=8080
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home gatekeeper
COPY config.yaml /etc/gatekeeper/config.yaml
USER gatekeeper
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_gatekeeper/healthz' % os.environ.get('WAITINGROOM_SERVER_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["gatekeeper", "run"]
