# Test-bed part "catalog": the database urgentflow_catalog on the machine's own Postgres
# (127.0.0.1:5432, trust auth, user postgres). The Postgres server is not ours: we never stop it.
# Sourced by scripts/testbed; defines catalog_start, catalog_stop, catalog_status.
# shellcheck shell=bash

CATALOG_PG_HOST=127.0.0.1
CATALOG_PG_PORT=${URGENTFLOW_CATALOG_PG_PORT:-5432}
CATALOG_PG_USER=postgres
CATALOG_DB=urgentflow_catalog

_catalog_psql() {
  psql -X -q -h "$CATALOG_PG_HOST" -p "$CATALOG_PG_PORT" -U "$CATALOG_PG_USER" -v ON_ERROR_STOP=1 "$@"
}

_catalog_answers() { _catalog_psql -d postgres -Atc 'select 1' >/dev/null 2>&1; }

# psql quotes the name itself (:'db' a literal, :"db" an identifier): it is never spliced into SQL text
_catalog_exists() {
  [ "$(_catalog_psql -d postgres -v db="$CATALOG_DB" -At <<<"select 1 from pg_database where datname = :'db'" 2>/dev/null)" = 1 ]
}

_catalog_how() {
  echo "start it with: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
}

catalog_start() {
  command -v psql >/dev/null \
    || die "psql is missing: the catalog uses the machine's Postgres (Debian postgresql); $(_catalog_how)"
  if ! _catalog_answers; then
    local versions
    versions=$(ls /etc/postgresql 2>/dev/null || true)
    if [ "$(echo "$versions" | wc -w)" = 1 ] && command -v pg_ctlcluster >/dev/null; then
      log "Postgres does not answer on $CATALOG_PG_HOST:$CATALOG_PG_PORT: trying pg_ctlcluster $versions main start"
      pg_ctlcluster --skip-systemctl-redirect "$versions" main start >/dev/null 2>&1 || true
      wait_until 20 "Postgres" _catalog_answers || true
    fi
    _catalog_answers \
      || die "the machine's Postgres does not answer on $CATALOG_PG_HOST:$CATALOG_PG_PORT as user $CATALOG_PG_USER (trust auth expected); $(_catalog_how)"
  fi
  if ! _catalog_exists; then
    _catalog_psql -d postgres -v db="$CATALOG_DB" <<<'create database :"db"' \
      || die "cannot create database $CATALOG_DB on $CATALOG_PG_HOST:$CATALOG_PG_PORT"
    log "created database $CATALOG_DB"
  fi
  write_connection catalog_db "{\"conn_type\":\"postgres\",\"host\":\"$CATALOG_PG_HOST\",\"port\":$CATALOG_PG_PORT,\"login\":\"$CATALOG_PG_USER\",\"schema\":\"$CATALOG_DB\",\"extra\":{\"connect_timeout\":5}}"
  log "ready: postgresql://$CATALOG_PG_USER@$CATALOG_PG_HOST:$CATALOG_PG_PORT/$CATALOG_DB; connection catalog_db"
}

catalog_stop() {
  log "nothing to stop: Postgres on $CATALOG_PG_HOST:$CATALOG_PG_PORT is the machine's, not ours (database $CATALOG_DB kept)"
}

catalog_status() {
  if _catalog_answers; then
    if _catalog_exists; then
      log "ready: Postgres answers on $CATALOG_PG_HOST:$CATALOG_PG_PORT, database $CATALOG_DB exists (connection catalog_db)"
    else
      log "Postgres answers on $CATALOG_PG_HOST:$CATALOG_PG_PORT but database $CATALOG_DB is missing: run scripts/testbed start catalog"
    fi
  else
    log "Postgres does not answer on $CATALOG_PG_HOST:$CATALOG_PG_PORT; $(_catalog_how)"
  fi
}
