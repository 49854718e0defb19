# One image for every fleetsync role: worker, beat, flower, CLI.

# sops decrypts SOPS-encrypted manifests at render, helm renders charts (helm template):
# the versions fleetsync dev build pins
FROM golang:1.26-bookworm AS sops
RUN CGO_ENABLED=0 go install github.com/getsops/sops/v3/cmd/sops@v3.13.3
RUN CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" helm.sh/helm/v3/cmd/helm@v3.22.0

FROM python:3.12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY --from=sops /go/bin/sops /usr/local/bin/sops
COPY --from=sops /go/bin/helm /usr/local/bin/helm
RUN useradd --create-home --uid 10001 fleetsync
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY workers ./workers
COPY scheduler ./scheduler
# devtools/ (local fleet, demo) stays out of the image: `fleetsync dev|demo` are not offered here.
RUN pip install --no-cache-dir .
# refuses to start with deploy/'s example credentials ("change-me"), then runs fleetsync
COPY deploy/image/entrypoint.sh /usr/local/bin/fleetsync-entrypoint

USER fleetsync
# where a worker makes its render key when FLEETSYNC_CACHE_KEY_FILE is not set (a volume
# mounted here starts with this owner and mode)
RUN mkdir -p -m 700 /home/fleetsync/.cache/fleetsync/keys
ENV FLEETSYNC_CACHE_DIR=/home/fleetsync/.cache/fleetsync \
    PROMETHEUS_MULTIPROC_DIR=/tmp/fleetsync-metrics
ENTRYPOINT ["fleetsync-entrypoint"]
CMD ["--help"]
