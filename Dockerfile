# One image for the four services (three and the gateway); docker-compose.yml picks the service.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PSYCOPG_WAIT_FUNC=wait_select
WORKDIR /app
COPY requirements.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.txt
COPY shared ./shared
COPY services ./services
COPY lianchuang_cli ./lianchuang_cli
RUN pip install --no-cache-dir --no-deps -e .
EXPOSE 8000 8001 8002 8003
# e.g. nameko run --config services/organizations/config.yaml services.organizations.service:OrganizationsService
