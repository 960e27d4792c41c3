#!/bin/sh
# Runs once, when the database's data volume is first initialised (the postgres image's /docker-entrypoint-initdb.d).
# Creates the application's role, `cxr_app`: it logs in, owns nothing, creates nothing, is no superuser. Its table
# rights are granted after every migration by `manage.py grant_app_role cxr_app` (docker/entrypoint.sh, migrate),
# as the owner `cxr` (POSTGRES_USER): read and write, but no UPDATE, DELETE or TRUNCATE on the audit log, report
# versions and expert answers, and, owning no table, it can neither drop nor disable the append-only triggers.
set -eu
: "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="$POSTGRES_APP_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE cxr_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'app_password';
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO cxr_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO cxr_app;
SQL
