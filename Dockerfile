# ledgerflow: one image for the worker, the producer and the migrations.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ledgerflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER ledgerflow
ENV PYTHONUNBUFFERED=1 LEDGERFLOW_LOG_FORMAT=json
ENTRYPOINT ["ledgerflow"]
CMD ["worker"]
