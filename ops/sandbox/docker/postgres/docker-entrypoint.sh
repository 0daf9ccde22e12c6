#!/usr/bin/env bash
# Entrypoint for the sandbox PostgreSQL image, modelled on the official image's:
#
#   POSTGRES_PASSWORD  required on first start (or POSTGRES_PASSWORD_FILE)
#   POSTGRES_USER      superuser created by initdb (default: postgres)
#   POSTGRES_DB        database created, owned by POSTGRES_USER (default: POSTGRES_USER)
#   PGDATA             data directory (default: /var/lib/postgresql/data)
#   POSTGRES_INITDB_ARGS  extra initdb arguments
#
# On an empty PGDATA: initdb, set the password (sent to psql on stdin, never on a
# command line), create the database, run /docker-entrypoint-initdb.d/*.sql|*.sh,
# then exec postgres in the foreground as the postgres user (PID 1: `docker stop`
# signals it directly).
set -Eeuo pipefail

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# VAR or VAR_FILE (like the official image; both set is an error).
file_env() {
	local var="$1" def="${2:-}" fvar="${1}_FILE" val
	if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
		log "error: both $var and $fvar are set (but are exclusive)"
		exit 1
	fi
	val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!fvar:-}" ]; then
		val="$(<"${!fvar}")"
	fi
	export "$var"="$val"
	unset "$fvar"
}

sql_literal() { local s="${1//\'/\'\'}"; printf "'%s'" "$s"; }
sql_ident() { local s="${1//\"/\"\"}"; printf '"%s"' "$s"; }

init_database() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	if [ -z "$POSTGRES_PASSWORD" ]; then
		cat >&2 <<-'MSG'
		Error: Database is uninitialized and superuser password is not specified.
		       You must specify POSTGRES_PASSWORD to a non-empty value for the
		       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
		MSG
		exit 1
	fi

	log "initialising $PGDATA (superuser \"$POSTGRES_USER\", database \"$POSTGRES_DB\")"
	# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list on purpose
	initdb --username="$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null

	cat >>"$PGDATA/postgresql.conf" <<-'CONF'

	# -- added by docker-entrypoint.sh
	listen_addresses = '*'
	password_encryption = 'scram-sha-256'
	wal_level = replica
	CONF
	# Local socket: trust (only reachable inside the container, like the official
	# image). Every TCP connection needs a SCRAM password.
	cat >"$PGDATA/pg_hba.conf" <<-'HBA'
	# TYPE  DATABASE     USER  ADDRESS        METHOD
	local   all          all                  trust
	local   replication  all                  trust
	host    all          all   0.0.0.0/0      scram-sha-256
	host    all          all   ::/0           scram-sha-256
	host    replication  all   0.0.0.0/0      scram-sha-256
	host    replication  all   ::/0           scram-sha-256
	HBA

	# A temporary server on the Unix socket only: nothing outside can connect yet.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start >/dev/null

	# The password goes to psql on stdin (a here-doc), never on a command line.
	psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname postgres <<-SQL
	ALTER ROLE $(sql_ident "$POSTGRES_USER") WITH PASSWORD $(sql_literal "$POSTGRES_PASSWORD");
	SQL
	if [ "$POSTGRES_DB" != postgres ]; then
		psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname postgres <<-SQL
		CREATE DATABASE $(sql_ident "$POSTGRES_DB") OWNER $(sql_ident "$POSTGRES_USER");
		SQL
	fi

	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
			*.sh)  log "running $f"; . "$f" ;;
			*.sql) log "running $f"; psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
			*)     log "ignoring $f" ;;
		esac
	done

	pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
	log "initialisation complete; ready for start up"
}

# `docker run IMAGE -c foo=bar` passes server options.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$PGDATA" /var/run/postgresql
		chown postgres:postgres "$PGDATA" /var/run/postgresql
		chmod 0700 "$PGDATA"
		chmod 2775 /var/run/postgresql
		export HOME=/var/lib/postgresql
		exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_database
	fi
	# The password variables are not needed by the server: keep them out of its environment.
	unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
	exec "$@"  # postgres reads PGDATA from the environment
fi

exec "$@"
