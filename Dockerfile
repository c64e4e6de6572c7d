# One image for the three services: `docker run IMAGE watcher|remediator|notifier`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 medic
COPY --from=build /install /usr/local
USER 10001
# Containers listen on all interfaces; the default (127.0.0.1) suits a laptop.
ENV MEDIC_HEALTH__HOST=0.0.0.0 \
    MEDIC_HEALTH__PORT=8080 \
    MEDIC_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["medic"]
CMD ["--help"]
