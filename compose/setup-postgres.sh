#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas up to date (idempotent).
set -eu
tool() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p 5432 -u "$POSTGRES_USER" --pw "$POSTGRES_PWD" "$@"; }
schema=/etc/temporal/schema/postgresql/v12
until nc -z "$POSTGRES_SEEDS" 5432; do sleep 1; done
for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}; dir=${db##*:}
  tool --db "$name" create || true   # already there on a restart
  tool --db "$name" setup-schema -v 0.0
  tool --db "$name" update-schema -d "$schema/$dir/versioned"
done
