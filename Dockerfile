# gsv-server on CUDA. Build: docker build -t gsv-server .   Run: see docker/compose.yaml
FROM pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GSV_HOST=0.0.0.0 \
    GSV_PORT=9872 \
    GSV_WEIGHTS_ROOT=/app/weights \
    GSV_DATA_DIR=/app/data \
    GSV_DEVICE=auto

RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
# torch 2.11.0 comes with the base image; pip keeps it (the project pins the same version).
# EXTRAS: optional extras, e.g. --build-arg EXTRAS=ray for an image that runs as a Ray Serve node.
ARG EXTRAS=
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && pip install --no-deps paddlespeech==1.5.0 && useradd --create-home --uid 1000 gsv && mkdir -p /app/weights /app/data && chown gsv /app/weights /app/data

USER gsv
# /app/data: the SQLite database of stored voices (unless GSV_DATABASE_URL names another database)
VOLUME ["/app/weights", "/app/data"]
EXPOSE 9872
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9872/healthz', timeout=4).status == 200 else 1)"

CMD ["gsv-server", "--host", "0.0.0.0", "--port", "9872", "--weights-root", "/app/weights"]
