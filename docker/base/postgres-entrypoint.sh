#!/usr/bin/env bash
# The official postgres image's first start, in short: on an empty PGDATA, initdb with POSTGRES_USER
# and POSTGRES_PASSWORD, then create POSTGRES_DB, then run the server in the foreground. Runs as the
# postgres user (the image's USER); anything but `postgres [FLAGS]` is exec'd unchanged.
set -euo pipefail

# docker-library's file_env: VAR, or the contents of the file named by VAR_FILE; not both.
file_env() {
    local name=$1 default=${2:-} file_name="${1}_FILE"
    if [[ -n ${!name:-} && -n ${!file_name:-} ]]; then
        echo "error: both $name and $file_name are set (but are exclusive)" >&2
        exit 1
    fi
    local value=$default
    if [[ -n ${!name:-} ]]; then
        value=${!name}
    elif [[ -n ${!file_name:-} ]]; then
        value=$(<"${!file_name}")
    fi
    export "$name"="$value"
    unset "$file_name"
}

init_cluster() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ -z $POSTGRES_PASSWORD && $auth != trust ]]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" \
            "(or set POSTGRES_HOST_AUTH_METHOD=trust on a private network only)" >&2
        exit 1
    fi
    local initdb=(initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth")
    if [[ -n $POSTGRES_PASSWORD ]]; then
        "${initdb[@]}" --pwfile=/dev/stdin <<<"$POSTGRES_PASSWORD" >/dev/null
    else
        "${initdb[@]}" >/dev/null
    fi
    # initdb's pg_hba.conf admits loopback only; other containers connect from the network's addresses.
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    if [[ $POSTGRES_DB != postgres ]]; then
        # A server on the socket only, so that nothing connects before the database exists.
        pg_ctl --silent --wait -o "-c listen_addresses=''" start
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db"' >/dev/null
        pg_ctl --silent --wait -m fast stop
    fi
    echo "initialized $PGDATA: user $POSTGRES_USER, database $POSTGRES_DB"
}

if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
if [[ ${1:-} == postgres ]]; then
    [[ -s $PGDATA/PG_VERSION ]] || init_cluster
    unset POSTGRES_PASSWORD
fi
exec "$@"
