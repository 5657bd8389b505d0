#!/bin/sh
# First start of the compose PostgreSQL: the Airflow metadata database and the warehouse, each with
# its own owner (passwords from the environment, see compose/.env.example). psql reads them from its
# environment (\getenv), so they are never on a command line; each database admits its own role
# only (PUBLIC loses CONNECT), as the stage containers hold the warehouse role's password.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv airflow_pw AIRFLOW_DB_PASSWORD
\getenv warehouse_pw WAREHOUSE_DB_PASSWORD
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE warehouse LOGIN PASSWORD :'warehouse_pw';
CREATE DATABASE warehouse OWNER warehouse;
REVOKE CONNECT ON DATABASE airflow, warehouse, postgres FROM PUBLIC;
SQL
