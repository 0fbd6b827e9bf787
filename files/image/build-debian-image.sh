#!/bin/sh
# Build a PostgreSQL image from Debian packages: debootstrap (minbase) + docker import.
# Shipped by pgsteady and run as root on the target host.
#
# Usage: build-debian-image.sh VERSION SUITE MIRROR TAG RECIPE_HASH [WORKDIR]
#   VERSION      Postgres major version, e.g. 17 (package postgresql-VERSION)
#   SUITE        Debian suite packaging it, e.g. trixie
#   MIRROR       Debian archive URI (http://, https:// or file:), from the host's apt sources
#   TAG          image tag to create, e.g. pgsteady/postgres:17-debian-0123456789ab
#   RECIPE_HASH  sha256 hex of the recipe, stored in the label io.pgsteady.recipe
#   WORKDIR      absolute scratch directory (default /var/tmp/pgsteady-image); the rootfs
#                is built in a fresh subdirectory and removed at exit, also on failure
# Environment:
#   DOCKER               docker client (default /usr/bin/docker if executable, else PATH)
#   PGSTEADY_ENTRYPOINT  entrypoint to install (default: docker-entrypoint.sh beside this file)
# Exit status:
#   0  TAG now holds an image labelled with RECIPE_HASH (built now, or already present)
#   2  bad arguments
#   3  missing prerequisite (not root, no debootstrap, no docker engine, no entrypoint)
#   1  a build step failed; nothing was tagged and no imported image is left behind
set -eu

PROG=pgsteady-build-image
LABEL=io.pgsteady.recipe
PG_UID=999
PG_GID=999
PGDATA_DIR=/var/lib/postgresql/data

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
    code=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$code"
}

[ $# -eq 5 ] || [ $# -eq 6 ] ||
    die 2 "usage: $0 VERSION SUITE MIRROR TAG RECIPE_HASH [WORKDIR]"
VERSION=$1
SUITE=$2
MIRROR=$3
TAG=$4
RECIPE=$5
WORKDIR=${6:-/var/tmp/pgsteady-image}

case $VERSION in '' | *[!0-9]*) die 2 "VERSION: '$VERSION' is not a Postgres major version" ;; esac
case $SUITE in '' | *[!a-z]*) die 2 "SUITE: '$SUITE' is not a Debian suite name" ;; esac
case $MIRROR in
    http://?* | https://?* | file:/?*) ;;
    *) die 2 "MIRROR: '$MIRROR' is not an http://, https:// or file: URI" ;;
esac
case $MIRROR in *[[:space:]]*) die 2 "MIRROR: '$MIRROR' contains whitespace" ;; esac
case $TAG in '' | *[!a-z0-9._/:-]*) die 2 "TAG: '$TAG' is not a valid image tag" ;; esac
case $RECIPE in *[!0-9a-f]*) die 2 "RECIPE_HASH: '$RECIPE' is not lowercase hex" ;; esac
[ ${#RECIPE} -eq 64 ] || die 2 "RECIPE_HASH: expected 64 hex digits, got ${#RECIPE}"
case $WORKDIR in
    /*[[:space:]]* | /*[!A-Za-z0-9._/-]*) die 2 "WORKDIR: '$WORKDIR' has unsafe characters" ;;
    /?*) ;;
    *) die 2 "WORKDIR: '$WORKDIR' is not an absolute path" ;;
esac

ENTRYPOINT=${PGSTEADY_ENTRYPOINT:-$(dirname "$0")/docker-entrypoint.sh}
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

[ "$(id -u)" -eq 0 ] || die 3 "must run as root (debootstrap, chroot, chown)"
command -v debootstrap >/dev/null 2>&1 || die 3 "debootstrap is not installed"
[ -r "$ENTRYPOINT" ] || die 3 "entrypoint '$ENTRYPOINT' not readable"
"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die 3 "no docker engine reachable with '$DOCKER'"

recipe_of() {
    "$DOCKER" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null ||
        true
}

mkdir -p "$WORKDIR"
chmod 0700 "$WORKDIR"
if command -v flock >/dev/null 2>&1; then
    # One build at a time per work dir; a waiting build then sees the finished image.
    exec 9>"$WORKDIR/.lock"
    flock 9
fi

if [ "$(recipe_of "$TAG")" = "$RECIPE" ]; then
    say "$TAG already present with recipe $RECIPE; nothing to do"
    exit 0
fi

BUILD=
BASE_ID=
IMAGE_ID=
cleanup() {
    status=$?
    trap - EXIT HUP INT TERM
    if [ -n "$BUILD" ] && [ -d "$BUILD" ]; then
        # Unmount whatever an interrupted debootstrap left below the build dir, deepest
        # first, so that removing the tree can never reach into the host's /proc or /dev.
        awk -v p="$BUILD/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r mnt; do umount -l "$mnt" || true; done
        rm -rf --one-file-system "$BUILD"
    fi
    if [ "$status" -ne 0 ]; then
        for id in $IMAGE_ID $BASE_ID; do "$DOCKER" rmi "$id" >/dev/null 2>&1 || true; done
    fi
    [ "$status" -eq 0 ] || printf '%s: build of %s failed (status %s)\n' \
        "$PROG" "$TAG" "$status" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

START=$(date +%s)
elapsed() { echo "$(($(date +%s) - START))s"; }

BUILD=$(mktemp -d "$WORKDIR/build.XXXXXX")
ROOTFS=$BUILD/rootfs
LOG=$WORKDIR/debootstrap-$SUITE-$VERSION.log

# --- 1. debootstrap -----------------------------------------------------------
# util-linux provides setpriv, which the entrypoint uses to drop root privileges.
say "[1/4] debootstrap minbase $SUITE with postgresql-$VERSION from $MIRROR (log: $LOG)"
if ! debootstrap --variant=minbase --include="postgresql-$VERSION,util-linux" \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die 1 "debootstrap failed; see $LOG"
fi
say "      debootstrap done after $(elapsed)"

# --- 2. shape the root filesystem ---------------------------------------------
say "[2/4] configuring rootfs (postgres uid/gid $PG_UID:$PG_GID, entrypoint, trimming)"
BIN=/usr/lib/postgresql/$VERSION/bin
for f in "$BIN/postgres" "$BIN/initdb" "$BIN/pg_ctl" /usr/bin/psql /usr/bin/setpriv /bin/bash; do
    [ -x "$ROOTFS$f" ] || die 1 "$f missing from the rootfs"
done

old_uid=$(awk -F: '$1 == "postgres" { print $3 }' "$ROOTFS/etc/passwd")
old_gid=$(awk -F: '$1 == "postgres" { print $3 }' "$ROOTFS/etc/group")
[ -n "$old_uid" ] && [ -n "$old_gid" ] || die 1 "no postgres user/group in the rootfs"
user_taken=$(awk -F: -v id="$PG_UID" '$3 == id && $1 != "postgres" { print $1 }' \
    "$ROOTFS/etc/passwd")
group_taken=$(awk -F: -v id="$PG_GID" '$3 == id && $1 != "postgres" { print $1 }' \
    "$ROOTFS/etc/group")
[ -z "$user_taken" ] || die 1 "uid $PG_UID is already used by '$user_taken' in the rootfs"
[ -z "$group_taken" ] || die 1 "gid $PG_GID is already used by '$group_taken' in the rootfs"
if [ "$old_uid" != "$PG_UID" ]; then
    find "$ROOTFS" -xdev -uid "$old_uid" -exec chown -h "$PG_UID" {} +
fi
if [ "$old_gid" != "$PG_GID" ]; then
    find "$ROOTFS" -xdev -gid "$old_gid" -exec chgrp -h "$PG_GID" {} +
fi
awk -F: -v OFS=: -v u="$PG_UID" -v g="$PG_GID" '$1 == "postgres" { $3 = u; $4 = g } 1' \
    "$ROOTFS/etc/passwd" >"$BUILD/passwd"
awk -F: -v OFS=: -v g="$PG_GID" '$1 == "postgres" { $3 = g } 1' \
    "$ROOTFS/etc/group" >"$BUILD/group"
cat "$BUILD/passwd" >"$ROOTFS/etc/passwd"
cat "$BUILD/group" >"$ROOTFS/etc/group"
say "      postgres uid:gid $old_uid:$old_gid -> $PG_UID:$PG_GID"

# The package's postinst created a cluster "main"; the entrypoint makes its own in PGDATA.
rm -rf "$ROOTFS/etc/postgresql/$VERSION" "$ROOTFS/var/lib/postgresql/$VERSION"
# No shared private key in the image: TLS material comes from the operator.
rm -f "$ROOTFS/etc/ssl/private/ssl-cert-snakeoil.key" "$ROOTFS/etc/ssl/certs/ssl-cert-snakeoil.pem"

install -d -m 0700 -o "$PG_UID" -g "$PG_GID" "$ROOTFS$PGDATA_DIR"
install -d -m 2775 -o "$PG_UID" -g "$PG_GID" "$ROOTFS/run/postgresql"
install -d -m 0755 "$ROOTFS/docker-entrypoint-initdb.d"
install -m 0755 "$ENTRYPOINT" "$ROOTFS/usr/local/bin/docker-entrypoint.sh"
ln -sf usr/local/bin/docker-entrypoint.sh "$ROOTFS/docker-entrypoint.sh"

# Like the official image: clusters created by initdb listen on all addresses (the
# container's network is the boundary; pg_hba.conf still demands scram-sha-256).
SAMPLE=$ROOTFS/usr/share/postgresql/$VERSION/postgresql.conf.sample
grep -q "^#listen_addresses = 'localhost'" "$SAMPLE" ||
    die 1 "unexpected listen_addresses line in $SAMPLE"
sed -i "s/^#listen_addresses = 'localhost'/listen_addresses = '*'/" "$SAMPLE"

# en_US.UTF-8 as well as the built-in C.UTF-8 (the image's LANG), so that a data dir
# initialised by the official image (LANG en_US.utf8) also starts on this one.
chroot "$ROOTFS" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8

# Keep later package installs slim too.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/pgsteady-slim" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
# shellcheck disable=SC2016 # dpkg-query's format, not a shell expansion
PG_FULL_VERSION=$(chroot "$ROOTFS" dpkg-query -W -f '${Version}' "postgresql-$VERSION")
rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/i18n "$ROOTFS"/usr/share/lintian \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/cache/ldconfig/aux-cache "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/var/log" -type f -delete
# debootstrap copied the build host's resolver and name; docker provides its own.
: >"$ROOTFS/etc/resolv.conf"
echo localhost >"$ROOTFS/etc/hostname"
say "      rootfs is $(du -sm "$ROOTFS" | cut -f1) MB (postgresql-$VERSION $PG_FULL_VERSION)"

# --- 3. import ------------------------------------------------------------------
# Imported untagged first; the tag is set only after every check passed.
# tar's status is checked separately: POSIX sh has no pipefail.
say "[3/4] docker import"
TAR_FAILED=$BUILD/tar.failed
BASE_ID=$(
    {
        tar --numeric-owner -C "$ROOTFS" --exclude='./dev/*' --exclude='./proc/*' \
            --exclude='./sys/*' -c . || echo "$?" >"$TAR_FAILED"
    } | "$DOCKER" import \
        --message "pgsteady postgresql-$VERSION $PG_FULL_VERSION ($SUITE, recipe $RECIPE)" \
        --change "ENV PATH=$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV PG_MAJOR=$VERSION" \
        --change "ENV PG_VERSION=$PG_FULL_VERSION" \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV PGDATA=$PGDATA_DIR" \
        --change "VOLUME $PGDATA_DIR" \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
        --change 'CMD ["postgres"]' \
        --change 'EXPOSE 5432' \
        -
)
[ ! -e "$TAR_FAILED" ] || die 1 "tar of the rootfs failed (status $(cat "$TAR_FAILED"))"
[ -n "$BASE_ID" ] || die 1 "docker import printed no image id"
say "      imported $BASE_ID after $(elapsed)"
# Not every engine accepts STOPSIGNAL as an import change (20.10 does not): add it, and
# the recipe label last of all, in a metadata-only build step without network.
mkdir "$BUILD/context"
cat >"$BUILD/context/Dockerfile" <<EOF
FROM $BASE_ID
STOPSIGNAL SIGINT
LABEL $LABEL=$RECIPE io.pgsteady.postgres-version=$VERSION io.pgsteady.suite=$SUITE
EOF
IMAGE_ID=$(DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --network none "$BUILD/context")
[ -n "$IMAGE_ID" ] || die 1 "docker build printed no image id"

# --- 4. check, then tag ---------------------------------------------------------
say "[4/4] smoke test and tag"
[ "$(recipe_of "$IMAGE_ID")" = "$RECIPE" ] || die 1 "imported image lacks label $LABEL=$RECIPE"
smoke=$("$DOCKER" run --rm --network none --entrypoint /bin/sh "$IMAGE_ID" -c \
    'postgres --version && setpriv --version >/dev/null && id -u postgres && id -g postgres')
printf '%s\n' "$smoke" | sed "s/^/$PROG:       /"
[ "$(printf '%s\n' "$smoke" | tail -n 2 | tr '\n' ' ')" = "$PG_UID $PG_GID " ] ||
    die 1 "postgres user in the image is not $PG_UID:$PG_GID"
"$DOCKER" tag "$IMAGE_ID" "$TAG"
IMAGE_ID=
BASE_ID=
size=$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")
say "built $TAG ($((size / 1048576)) MB) in $(elapsed)"
