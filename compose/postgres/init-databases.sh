#!/bin/sh
# First start of the compose PostgreSQL: the Airflow metadata database and the warehouse, each with
# its own owner (passwords from the environment, see compose/.env.example).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v warehouse_pw="$WAREHOUSE_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE warehouse LOGIN PASSWORD :'warehouse_pw';
CREATE DATABASE warehouse OWNER warehouse;
SQL
