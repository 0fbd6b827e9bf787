#!/bin/bash
# Entrypoint of pgsteady's Debian-built Postgres image, honouring the official image's
# contract: POSTGRES_PASSWORD[_FILE], POSTGRES_USER[_FILE], POSTGRES_DB[_FILE],
# POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR, PGDATA, /docker-entrypoint-initdb.d.
#
# Differences from the official image, on purpose:
#   * no `trust` anywhere: local (unix socket) connections use `peer`, mapped so that the
#     OS user postgres may log in as POSTGRES_USER; TCP connections use scram-sha-256.
#     POSTGRES_HOST_AUTH_METHOD may only be scram-sha-256 (anything else is refused).
#   * a failed initialisation (initdb.d script error) leaves the marker file
#     PGDATA/.pgsteady-init-incomplete; later starts refuse to run on such a data dir
#     instead of silently serving a half-initialised database. Nothing is deleted: to
#     retry, empty the data volume.
#   * PGSTEADY_RESTORE_ON_EMPTY=1: on an empty data dir, when PGSTEADY_BACKUP_DIR (default
#     /backups) holds pgsteady backups, the newest backup of every database is restored
#     instead of starting empty (roles from the newest globals dump, the superuser's own
#     role excepted); the initdb.d scripts then run as usual, so they must be idempotent.
#     Rows of tables the superuser does not own are loaded by a session that logs in as
#     the NOSUPERUSER role pgsteady_restore (with --role=<owner>), never as the superuser.
#     When pgBackRest is configured (PGBACKREST_STANZA) and its repository holds a backup,
#     that backup is restored instead and every archived WAL replayed (to the end of the
#     archive), in a temporary server; the spent recovery settings are then reset.
set -euo pipefail
shopt -s nullglob

INIT_DIR=${PGSTEADY_INIT_DIR:-/docker-entrypoint-initdb.d}
SOCKET_DIR=/var/run/postgresql
INCOMPLETE_MARKER=.pgsteady-init-incomplete
IDENT_MAP=pgsteady
RESTORE_ROLE=pgsteady_restore
RESTORE_STAGE=/var/lib/postgresql/pgsteady-restore

log() { printf 'pgsteady-entrypoint: %s\n' "$*"; }
die() {
	printf 'pgsteady-entrypoint: error: %s\n' "$*" >&2
	exit 1
}

# file_env VAR [DEFAULT]: VAR from the environment, or from the file named by VAR_FILE.
file_env() {
	local var=$1 default=${2:-} file_var="${1}_FILE" value
	if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
		die "both $var and $file_var are set; use only one"
	fi
	value=$default
	if [[ -n ${!var:-} ]]; then
		value=${!var}
	elif [[ -n ${!file_var:-} ]]; then
		[[ -r ${!file_var} ]] ||
			die "$file_var=${!file_var} is not readable by uid $(id -u) (own it by uid 999 or make it group-readable)"
		value=$(<"${!file_var}")
	fi
	export "$var=$value"
	unset "$file_var"
}

# True when the arguments only ask postgres for information (no server, no init).
wants_help() {
	local arg
	for arg; do
		case $arg in
		-'?' | --help | --describe-config | -V | --version | -C | -C?*) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	: "${PGDATA:=/var/lib/postgresql/data}"
	export PGDATA
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_INITDB_WALDIR:=}"
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	local name
	for name in POSTGRES_USER POSTGRES_DB; do
		[[ -n ${!name} && ${!name} != *[$'\n\r']* ]] ||
			die "$name must be a non-empty name on one line"
	done
	# initdb writes the superuser's name into SQL unescaped (spaces are fine).
	[[ $POSTGRES_USER != *'"'* ]] ||
		die "POSTGRES_USER must not contain a double quote (initdb cannot create that role)"
	[[ $POSTGRES_HOST_AUTH_METHOD == scram-sha-256 ]] ||
		die "POSTGRES_HOST_AUTH_METHOD=$POSTGRES_HOST_AUTH_METHOD is not supported; this image only uses scram-sha-256"
}

# As root: create and own the directories postgres needs, then re-run this script as
# postgres (setpriv execs, so the postmaster ends up as PID 1 and gets signals directly).
prepare_dirs_as_root_and_drop() {
	: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_INITDB_WALDIR:=}"
	mkdir -p "$PGDATA" "$SOCKET_DIR"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chmod 0700 "$PGDATA"
	chown postgres:postgres "$SOCKET_DIR"
	chmod 2775 "$SOCKET_DIR"
	if [[ -n $POSTGRES_INITDB_WALDIR ]]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
		chmod 0700 "$POSTGRES_INITDB_WALDIR"
	fi
	stage_restore_as_root
	HOME=$(getent passwd postgres | cut -d: -f6)
	export HOME USER=postgres LOGNAME=postgres
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
}

# As root (the backups are root-only 0600): copy the newest verified backups where the
# postgres user can read them, when restore-on-empty is asked for and PGDATA is empty.
stage_restore_as_root() {
	local backups=${PGSTEADY_BACKUP_DIR:-/backups} latest target
	[[ ${PGSTEADY_RESTORE_ON_EMPTY:-0} == 1 ]] || return 0
	rm -rf "$RESTORE_STAGE"
	[[ $(data_dir_state) == empty ]] || return 0
	local -a found=("$backups"/last/*-latest.dump)
	if ((${#found[@]} == 0)); then
		log "restore-on-empty: no backups in $backups/last; initialising an empty cluster"
		return 0
	fi
	mkdir -p "$RESTORE_STAGE"
	for latest in "${found[@]}" "$backups"/last/globals-latest.sql; do
		target=$(readlink -f "$latest")
		[[ -f $target ]] || die "restore-on-empty: $latest points to a missing file"
		(cd "$(dirname "$target")" && sha256sum --quiet -c "$(basename "$target").sha256") ||
			die "restore-on-empty: $target fails its sha256 check; refusing to restore it"
		cp "$target" "$RESTORE_STAGE/$(basename "$latest")"
		log "restore-on-empty: staged $target"
	done
	chown -R postgres:postgres "$RESTORE_STAGE"
	chmod -R go= "$RESTORE_STAGE"
}

# In the temporary server: roles first, then each database with its owner.
restore_staged() {
	local dump globals=$RESTORE_STAGE/globals-latest.sql
	if [[ -f $globals ]]; then
		log "restore-on-empty: restoring roles"
		# The superuser exists already, with the password of this deployment's secret.
		local role_re
		role_re=$(printf '%s' "$POSTGRES_USER" | sed 's/[][\\.*^$+?(){}|/]/\\&/g')
		grep -Ev "^(CREATE|ALTER) ROLE \"?$role_re\"?[ ;]" "$globals" |
			psql_init --dbname postgres -q -v ON_ERROR_STOP=1
	fi
	restore_role login
	for dump in "$RESTORE_STAGE"/*-latest.dump; do
		log "restore-on-empty: restoring $(basename "$dump")"
		restore_dump "$dump"
	done
	restore_role nologin
	sed -i "/^$IDENT_MAP  postgres  $RESTORE_ROLE\$/d" "$PGDATA/pg_ident.conf"
	rm -rf "$RESTORE_STAGE"
	log "restore-on-empty: restored the newest backups"
}

# psql as the superuser with search_path pinned: it never resolves an app-made object.
psql_su() {
	PGOPTIONS='-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off' psql_init -X -q --dbname postgres "$@"
}

# restore_role login|nologin: the NOSUPERUSER, NOINHERIT role that loads app-owned rows
# (it logs in by peer: initialise maps the OS user postgres to it in pg_ident.conf), with
# no memberships left from the globals dump; nologin takes its login away again.
restore_role() {
	if [[ $1 == nologin ]]; then
		psql_su -v r="$RESTORE_ROLE" <<<'ALTER ROLE :"r" NOLOGIN'
		return
	fi
	psql_su -v r="$RESTORE_ROLE" <<-'EOF'
		SELECT pg_catalog.format('CREATE ROLE %I', :'r')
		 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'r') \gexec
		ALTER ROLE :"r" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
		  NOBYPASSRLS NOINHERIT PASSWORD NULL;
		SELECT pg_catalog.format('REVOKE %I FROM %I', g.rolname, :'r')
		  FROM pg_catalog.pg_auth_members m
		  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
		  JOIN pg_catalog.pg_roles u ON u.oid = m.member
		 WHERE u.rolname = :'r' \gexec
	EOF
}

# restore_dump DUMP: the schema as the superuser; the rows of each table owned by a role
# that is not a superuser in a session that LOGS IN as the restore role, with
# --role=<owner> (loading runs the owner's CHECK, domain and generated-column code; were
# the session the superuser's, that code could RESET ROLE and be the superuser); the
# superuser's own rows as the superuser; then indexes, constraints and triggers.
restore_dump() {
	local dump=$1 work db file owner
	work=$(mktemp -d)
	db=$(pg_restore --list "$dump" | sed -n 's/^;[[:space:]]*dbname: //p' | head -n 1)
	[[ -n $db ]] || die "restore-on-empty: $dump names no database"
	pg_restore --create --section=pre-data --exit-on-error --dbname postgres \
		--username "$POSTGRES_USER" "$dump" || die "restore-on-empty: pg_restore of $dump failed"
	# The data entries only: a role that owns no rows gets no pass (and no grant).
	pg_restore --list --section=data "$dump" >"$work/toc"
	psql_su -At -c "SELECT CASE WHEN rolsuper THEN 's' ELSE 'u' END || rolname
		FROM pg_catalog.pg_roles ORDER BY pg_catalog.length(rolname) DESC" >"$work/roles"
	# Each entry goes to the list of the role its line ends with (longest name first).
	awk -v dir="$work" '
		FNR == NR { kind[++n] = substr($0, 1, 1); name[n] = substr($0, 2); next }
		/^;/ || /^[[:space:]]*$/ { next }
		{
			file = dir "/list.super"; found = 0
			for (i = 1; i <= n; i++) {
				s = " " name[i]
				if (length($0) > length(s) && substr($0, length($0) - length(s) + 1) == s) {
					found = 1
					if (kind[i] == "u") {
						file = dir "/list." i
						if (!(i in seen)) { seen[i] = 1; printf "%s", name[i] > (dir "/owner." i) }
					}
					break
				}
			}
			if (!found && index($0, " TABLE DATA ")) { print "no owner: " $0 > "/dev/stderr"; exit 3 }
			print > file
		}' "$work/roles" "$work/toc" || die "restore-on-empty: cannot tell who owns the rows of $dump"
	if [[ -f $work/list.super ]]; then
		pg_restore --section=data --use-list="$work/list.super" --exit-on-error \
			--dbname "$db" --username "$POSTGRES_USER" "$dump" ||
			die "restore-on-empty: pg_restore of $dump failed"
	fi
	for file in "$work"/owner.*; do
		owner=$(<"$file")
		psql_su -v o="$owner" -v r="$RESTORE_ROLE" -v db="$db" \
			<<<'GRANT :"o" TO :"r"; GRANT CONNECT ON DATABASE :"db" TO :"r";'
		pg_restore --section=data --use-list="$work/list.${file##*.}" --exit-on-error \
			--dbname "$db" --username "$RESTORE_ROLE" --role="$owner" "$dump" ||
			die "restore-on-empty: pg_restore of the rows $owner owns in $dump failed"
		psql_su -v o="$owner" -v r="$RESTORE_ROLE" -v db="$db" \
			<<<'REVOKE :"o" FROM :"r"; REVOKE CONNECT ON DATABASE :"db" FROM :"r";'
	done
	pg_restore --section=post-data --exit-on-error --dbname "$db" \
		--username "$POSTGRES_USER" "$dump" || die "restore-on-empty: pg_restore of $dump failed"
	rm -rf "$work"
}

prepare_dirs_as_user() {
	mkdir -p "$PGDATA" 2>/dev/null || true
	chmod 0700 "$PGDATA" 2>/dev/null || true
	[[ -w $PGDATA ]] || die "PGDATA=$PGDATA is not writable by uid $(id -u)"
}

data_dir_state() {
	if [[ -e $PGDATA/$INCOMPLETE_MARKER ]]; then
		echo incomplete
	elif [[ -s $PGDATA/PG_VERSION ]]; then
		echo initialised
	else
		echo empty
	fi
}

write_hba() {
	cat >"$PGDATA/pg_hba.conf" <<-EOF
		# Written by pgsteady's docker-entrypoint.sh at initialisation. No trust entries:
		# the socket uses peer (map "$IDENT_MAP" in pg_ident.conf), TCP uses scram-sha-256.
		# TYPE   DATABASE     USER  ADDRESS  METHOD
		local    all          all            peer map=$IDENT_MAP
		local    replication  all            peer map=$IDENT_MAP
		host     all          all   all      scram-sha-256
		host     replication  all   all      scram-sha-256
	EOF
	{
		echo "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME  (written by pgsteady's docker-entrypoint.sh)"
		echo "$IDENT_MAP  postgres  $(conf_quote "$POSTGRES_USER")"
	} >>"$PGDATA/pg_ident.conf"
}

# conf_quote NAME: NAME as one double-quoted pg_hba/pg_ident token (spaces, commas,
# keywords such as "all" and leading "+" or "/" lose their meaning; " is doubled).
conf_quote() {
	local q='"'
	printf '"%s"' "${1//$q/$q$q}"
}

run_initdb() {
	[[ -n $POSTGRES_PASSWORD ]] || die "database is uninitialised and no superuser password is set.
  Set POSTGRES_PASSWORD_FILE (preferred) or POSTGRES_PASSWORD to a non-empty value;
  this image never initialises a cluster without a password."
	local -a args=(--username="$POSTGRES_USER" --auth-local=peer --auth-host=scram-sha-256)
	[[ -z $POSTGRES_INITDB_WALDIR ]] || args+=(--waldir="$POSTGRES_INITDB_WALDIR")
	# POSTGRES_INITDB_ARGS is split on whitespace, as in the official image.
	# shellcheck disable=SC2206
	args+=($POSTGRES_INITDB_ARGS)
	log "initialising $PGDATA: initdb ${args[*]}"
	initdb "${args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
	: >"$PGDATA/$INCOMPLETE_MARKER"
	write_hba
}

# Every superuser session runs as the superuser, writes allowed, whatever a (restored)
# database has set for role / default_transaction_read_only (pgsteady/postgres/session.py).
psql_init() {
	PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c role=none -c default_transaction_read_only=off" \
		psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

# For sourced initdb.d scripts written against the official image's helpers.
docker_process_sql() {
	psql_init --dbname "$POSTGRES_DB" "$@"
}

# A server reachable only through the socket, for the initialisation steps.
temp_server_start() {
	local -a opts=("$@" -c listen_addresses= -c "unix_socket_directories=$SOCKET_DIR"
		-c "hba_file=$PGDATA/pg_hba.conf" -c "ident_file=$PGDATA/pg_ident.conf"
		-p "${PGPORT:-5432}")
	log "starting a temporary server (unix socket only)"
	pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${opts[@]}")" -w start
	TEMP_SERVER_UP=1
}

temp_server_stop() {
	log "stopping the temporary server"
	pg_ctl -D "$PGDATA" -m fast -w stop
	TEMP_SERVER_UP=
}

# On any failure during initialisation, do not leave the temporary server behind.
on_exit() {
	local status=$?
	if [[ -n ${TEMP_SERVER_UP:-} ]]; then
		log "stopping the temporary server after a failure"
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if ((status != 0)); then
		printf 'pgsteady-entrypoint: exiting with status %s\n' "$status" >&2
	fi
}
trap on_exit EXIT

create_database() {
	[[ $POSTGRES_DB != postgres ]] || return 0
	local exists
	exists=$(psql_init --dbname postgres -tA -v db="$POSTGRES_DB" \
		<<<"SELECT 1 FROM pg_database WHERE datname = :'db'")
	[[ -n $exists ]] || psql_init --dbname postgres -v db="$POSTGRES_DB" \
		<<<'CREATE DATABASE :"db"'
	log "created database $POSTGRES_DB"
}

run_init_scripts() {
	local f
	# Scripts run in name order (LANG is C.UTF-8: code point order).
	export PGHOST=$SOCKET_DIR PGPORT=${PGPORT:-5432} PGUSER=$POSTGRES_USER PGDATABASE=$POSTGRES_DB
	for f in "$INIT_DIR"/*; do
		case $f in
		*.sh)
			if [[ -x $f ]]; then
				log "running $f"
				"$f" || die "$f failed (status $?)"
			else
				log "sourcing $f"
				# Scripts written for the official image may use unset variables.
				set +u
				# shellcheck disable=SC1090
				. "$f"
				set -u
			fi
			;;
		*.sql)
			log "running $f"
			psql_init --dbname "$POSTGRES_DB" -f "$f" || die "$f failed"
			;;
		*.sql.gz)
			log "running $f"
			gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" || die "$f failed"
			;;
		*.sql.xz)
			log "running $f"
			xz -dc "$f" | psql_init --dbname "$POSTGRES_DB" || die "$f failed"
			;;
		*.sql.zst)
			log "running $f"
			zstd -dc "$f" | psql_init --dbname "$POSTGRES_DB" || die "$f failed"
			;;
		*) log "ignoring $f" ;;
		esac
	done
	unset PGHOST PGUSER PGDATABASE
}

# First start on an empty data dir: initdb, then the staged backups (restore-on-empty)
# or the database, then the init scripts.
initialise() {
	run_initdb
	# restore-on-empty loads app-owned rows as the NOSUPERUSER restore role (peer login).
	[[ ! -d $RESTORE_STAGE ]] || echo "$IDENT_MAP  postgres  $RESTORE_ROLE" >>"$PGDATA/pg_ident.conf"
	temp_server_start "$@"
	if [[ -d $RESTORE_STAGE ]]; then
		restore_staged
	fi
	create_database
	run_init_scripts
	temp_server_stop
	rm -f "$PGDATA/$INCOMPLETE_MARKER"
	log "initialisation complete; ready for start up"
}

# restore-on-empty from pgBackRest: is there a backup to restore?
pgbackrest_has_backup() {
	[[ ${PGSTEADY_RESTORE_ON_EMPTY:-0} == 1 && -n ${PGBACKREST_STANZA:-} ]] || return 1
	local info
	# A failing info (wrong passphrase, unreadable repository) is not "no backup": starting
	# empty, or from older pg_dump backups, would hide newer data that is still there.
	info=$(pgbackrest info --output=json) ||
		die "restore-on-empty: pgbackrest info failed (see above); refusing to start an empty or older cluster"
	[[ $info == *'"label"'* ]]
}

# Newest backup + the whole archive, replayed and promoted in a temporary server; then the
# recovery settings pgBackRest wrote to postgresql.auto.conf are reset.
restore_from_pgbackrest() {
	log "restore-on-empty: restoring the newest pgBackRest backup (stanza $PGBACKREST_STANZA)"
	rm -rf "$RESTORE_STAGE"
	pgbackrest restore --type=default
	temp_server_start "$@"
	local i
	for ((i = 0; i < 86400; i++)); do
		[[ $(psql -X -q -A -t -h "$SOCKET_DIR" --username "$POSTGRES_USER" -d postgres \
			-c 'SELECT pg_catalog.pg_is_in_recovery()') == f ]] && break
		pg_ctl -D "$PGDATA" status >/dev/null ||
			die "restore-on-empty: the server stopped during recovery (its log is above)"
		sleep 1
	done
	psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" --username "$POSTGRES_USER" -d postgres \
		-c 'ALTER SYSTEM RESET restore_command'
	temp_server_stop
	log "restore-on-empty: restored from pgBackRest up to the end of its archive"
}

# --- cluster members (issue 15): Patroni supervises the server ---------------------------
# `patroni`: as root, prepare the directories as for a server, then as the postgres user
# fill the private tmpfs PATRONI_DIR with the rendered configuration (no secrets) and a 0600
# file of passwords read from the secret files, and exec Patroni on that directory (it
# merges its *.yml in name order). Passwords never reach argv, the environment or a volume.
PATRONI_DIR=${PGSTEADY_PATRONI_DIR:-/run/patroni}
PATRONI_CONFIG=${PGSTEADY_PATRONI_CONFIG:-/etc/pgsteady/patroni.yml}
SECRETS_DIR=${PGSTEADY_SECRETS_DIR:-/run/secrets}

# The passwords Patroni needs, as YAML (python's own quoting: a password is any text).
patroni_secrets_yml() {
	python3 - "$SECRETS_DIR" <<-'EOF'
		import sys, yaml
		d = sys.argv[1]
		def pw(name):
		    with open(f"{d}/{name}") as f:
		        value = f.read().strip()
		    if not value:
		        sys.exit(f"pgsteady-entrypoint: error: {d}/{name} is empty")
		    return value
		su = pw("postgres_password")
		doc = {
		    "restapi": {"authentication": {"username": "patroni", "password": pw("patroni_rest_password")}},
		    "etcd3": {"password": pw("etcd_patroni_password")},
		    "postgresql": {"authentication": {
		        "superuser": {"password": su},
		        "replication": {"password": pw("replication_password")},
		        "rewind": {"password": pw("rewind_password")},
		    }},
		}
		sys.stdout.write("# written by pgsteady's docker-entrypoint.sh at start; 0600\n")
		yaml.safe_dump(doc, sys.stdout, default_flow_style=False)
	EOF
}

run_patroni() {
	[[ -r $PATRONI_CONFIG ]] || die "$PATRONI_CONFIG is not readable by uid $(id -u)"
	[[ -d $PATRONI_DIR && -O $PATRONI_DIR ]] || die "$PATRONI_DIR must be a directory of uid $(id -u)"
	chmod 0700 "$PATRONI_DIR"
	umask 077
	rm -f "$PATRONI_DIR"/*.yml
	cp "$PATRONI_CONFIG" "$PATRONI_DIR/10-pgsteady.yml"
	patroni_secrets_yml >"$PATRONI_DIR/.90-secrets.yml.new"
	mv "$PATRONI_DIR/.90-secrets.yml.new" "$PATRONI_DIR/90-secrets.yml"
	log "starting Patroni on $PATRONI_DIR"
	exec patroni "$PATRONI_DIR"
}

# `post-bootstrap CONNSTRING`: called by Patroni on the member that ran initdb, with the
# server up: the database and the init scripts, as a single host's first start does.
post_bootstrap() {
	setup_env
	# the member's socket directory and port, from Patroni's key=value connection string
	local dsn=${1:-}
	[[ $dsn =~ (^|[[:space:]])host=([^[:space:]]+) ]] && SOCKET_DIR=${BASH_REMATCH[2]}
	[[ $dsn =~ (^|[[:space:]])port=([0-9]+) ]] && export PGPORT=${BASH_REMATCH[2]}
	export PGHOST=$SOCKET_DIR
	create_database
	run_init_scripts
	log "post-bootstrap complete"
}

main() {
	case ${1:-} in
	patroni)
		if [[ $(id -u) == 0 ]]; then
			mkdir -p "$PATRONI_DIR"
			chown postgres:postgres "$PATRONI_DIR"
			chmod 0700 "$PATRONI_DIR"
			prepare_dirs_as_root_and_drop "$@"
		fi
		run_patroni
		;;
	post-bootstrap)
		[[ $(id -u) != 0 ]] || die "post-bootstrap runs as the postgres user (Patroni's)"
		post_bootstrap "${2:-}"
		exit 0
		;;
	esac
	if [[ ${1:-} == -* ]]; then
		set -- postgres "$@"
	fi
	if [[ ${1:-} != postgres ]]; then
		exec "$@"
	fi
	if wants_help "$@"; then
		# postgres refuses to run as root, even to print information.
		if [[ $(id -u) == 0 ]]; then
			exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
		fi
		exec "$@"
	fi

	if [[ $(id -u) == 0 ]]; then
		prepare_dirs_as_root_and_drop "$@"
	fi
	# From here on as the postgres user: *_FILE secrets must be readable by it, as with
	# the official image (own them by uid 999, or make them group-readable).
	setup_env
	prepare_dirs_as_user

	case $(data_dir_state) in
	empty)
		if pgbackrest_has_backup; then
			restore_from_pgbackrest "${@:2}"
		else
			initialise "${@:2}"
		fi
		;;
	initialised) log "$PGDATA holds a cluster; skipping initialisation" ;;
	incomplete)
		die "$PGDATA holds an incomplete initialisation (marker $INCOMPLETE_MARKER: the first start failed before it finished).
  Refusing to start on it. Inspect it, then empty the data volume to initialise again."
		;;
	esac
	unset POSTGRES_PASSWORD
	exec "$@"
}

main "$@"
