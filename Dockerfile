# Image for docker-compose.yml: the three processes share it and differ by command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
COPY infra infra
RUN pip install --no-cache-dir .
CMD ["oee", "--help"]
