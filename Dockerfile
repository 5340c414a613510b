# ledgerflow: one image for the worker, the API and console, the producer and the migrations.

# The console's scripts, from the npm registry as frontend/package-lock.json pins them.
FROM node:20-slim AS console
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/src ./src
RUN npm run build  # into /src/ledgerflow/web/static/dist

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=console /src/ledgerflow/web/static/dist ./src/ledgerflow/web/static/dist
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[openlineage]'

FROM python:3.11-slim
# A Unicode font for the PDF reports (rule names and justifications in any language).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 ledgerflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'ledgerflow[openlineage]' \
    && rm -rf /wheels
USER ledgerflow
ENV PYTHONUNBUFFERED=1 LEDGERFLOW_LOG_FORMAT=json
ENTRYPOINT ["ledgerflow"]
CMD ["worker"]
