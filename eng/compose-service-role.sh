#!/bin/sh
# docker-compose database init (runs once, on an empty data volume, as POSTGRES_USER): the API's login role.
set -eu
psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v service_role=integrations_service -v service_password="$INTEGRATIONS_SERVICE_PASSWORD" \
  -f /integrations/service-role.sql
