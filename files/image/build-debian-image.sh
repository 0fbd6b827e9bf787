#!/bin/sh
# Build a PostgreSQL image from signed Debian packages: debootstrap (minbase) with the
# archive keyring, the security suite applied with apt-get upgrade, then docker import.
# Shipped by pgsteady and run as root on the target host.
#
# Usage: build-debian-image.sh VERSION SUITE MIRROR SECURITY_MIRROR TAG RECIPE_HASH [WORKDIR]
#   VERSION          Postgres major version, e.g. 17 (package postgresql-VERSION)
#   SUITE            Debian suite packaging it, e.g. trixie
#   MIRROR           Debian archive URI (http://, https:// or file:), from the host's apt sources
#   SECURITY_MIRROR  archive serving SUITE-security (same schemes), from the host's apt sources
#   TAG              image tag to create, e.g. pgsteady/postgres:17-debian-0123456789ab
#   RECIPE_HASH      sha256 hex of the recipe, stored in the label io.pgsteady.recipe
#   WORKDIR          root-only scratch directory (default /var/lib/pgsteady/image-build):
#                    created 0700 when missing; refused when it or any directory above it
#                    is a symlink, not owned by root, or writable by others (sticky
#                    directories such as /tmp excepted above it). The rootfs is built in a
#                    fresh mktemp directory inside it and removed at exit, also on failure.
# Environment:
#   DOCKER               docker client (default /usr/bin/docker if executable, else PATH)
#   PGSTEADY_ENTRYPOINT  entrypoint to install (default: docker-entrypoint.sh beside this file)
#   PGSTEADY_KEYRING     keyring Release files must be signed with
#                        (default /usr/share/keyrings/debian-archive-keyring.gpg)
#   PGSTEADY_REFRESH=1   build even when TAG carries RECIPE_HASH (security and minor
#                        updates); TAG moves only when an installed package version changed
#   PGSTEADY_EXTRA_PACKAGES  space-separated Debian packages debootstrap also installs
#                        (a cluster's flavour: patroni python3-etcd etcd-server etcd-client
#                        haproxy); each must end up installed. Part of RECIPE_HASH.
# Exit status:
#   0  TAG now holds an image labelled with RECIPE_HASH (built now, or already present)
#   2  bad arguments
#   3  missing prerequisite or unsafe WORKDIR (not root, no debootstrap, no keyring,
#      no docker engine, no entrypoint)
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

[ $# -eq 6 ] || [ $# -eq 7 ] ||
    die 2 "usage: $0 VERSION SUITE MIRROR SECURITY_MIRROR TAG RECIPE_HASH [WORKDIR]"
VERSION=$1
SUITE=$2
MIRROR=$3
SECURITY_MIRROR=$4
TAG=$5
RECIPE=$6
WORKDIR=${7:-/var/lib/pgsteady/image-build}
KEYRING=${PGSTEADY_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

case $VERSION in '' | *[!0-9]*) die 2 "VERSION: '$VERSION' is not a Postgres major version" ;; esac
case $SUITE in '' | *[!a-z]*) die 2 "SUITE: '$SUITE' is not a Debian suite name" ;; esac
check_uri() {
    case $2 in
        http://?* | https://?* | file:/?*) ;;
        *) die 2 "$1: '$2' is not an http://, https:// or file: URI" ;;
    esac
    case $2 in *[[:space:]]*) die 2 "$1: '$2' contains whitespace" ;; esac
}
check_uri MIRROR "$MIRROR"
check_uri SECURITY_MIRROR "$SECURITY_MIRROR"
case $TAG in '' | *[!a-z0-9._/:-]*) die 2 "TAG: '$TAG' is not a valid image tag" ;; esac
case $RECIPE in *[!0-9a-f]*) die 2 "RECIPE_HASH: '$RECIPE' is not lowercase hex" ;; esac
[ ${#RECIPE} -eq 64 ] || die 2 "RECIPE_HASH: expected 64 hex digits, got ${#RECIPE}"
EXTRA_PACKAGES=${PGSTEADY_EXTRA_PACKAGES:-}
# Names and spaces only: no glob or shell character reaches the word splitting below.
case $EXTRA_PACKAGES in *[!a-z0-9+.\ -]*) die 2 "PGSTEADY_EXTRA_PACKAGES: '$EXTRA_PACKAGES' is not a list of Debian package names" ;; esac
INCLUDE="postgresql-$VERSION,util-linux,pgbackrest,prometheus-postgres-exporter,prometheus-node-exporter,pgbouncer"
for pkg in $EXTRA_PACKAGES; do
    case $pkg in
        [a-z0-9]*[!a-z0-9+.-]* | [!a-z0-9]*) die 2 "PGSTEADY_EXTRA_PACKAGES: '$pkg' is not a Debian package name" ;;
    esac
    INCLUDE="$INCLUDE,$pkg"
done
case $WORKDIR in
    /*[[:space:]]* | /*[!A-Za-z0-9._/-]*) die 2 "WORKDIR: '$WORKDIR' has unsafe characters" ;;
    */. | */.. | */./* | */../* | *//*) die 2 "WORKDIR: '$WORKDIR' is not a plain path" ;;
    /?*) ;;
    *) die 2 "WORKDIR: '$WORKDIR' is not an absolute path" ;;
esac

ENTRYPOINT=${PGSTEADY_ENTRYPOINT:-$(dirname "$0")/docker-entrypoint.sh}
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

[ "$(id -u)" -eq 0 ] || die 3 "must run as root (debootstrap, chroot, chown)"

# --- the work directory: root's alone ------------------------------------------
# What root writes and later imports must not be reachable by another uid: refuse a
# work directory (or any directory above it) that another uid owns or can write to,
# and never follow a symlink to it.
umask 077
owner_mode() { stat -c '%u %a' "$1"; }
check_ancestors() {
    p=$1
    while :; do
        set -- $(owner_mode "$p")
        [ "$1" = 0 ] || die 3 "WORKDIR: '$p' above the work directory is owned by uid $1, not root"
        # A group/other-writable directory lets another uid rename entries, unless sticky.
        if [ $(((0$2 & 022) != 0 && (0$2 & 01000) == 0)) = 1 ]; then
            die 3 "WORKDIR: '$p' above the work directory is writable by other users (mode $2)"
        fi
        [ "$p" != / ] || break
        p=$(dirname "$p")
    done
}
[ ! -L "$WORKDIR" ] || die 3 "WORKDIR: '$WORKDIR' is a symlink; refusing it"
UP=$(dirname "$WORKDIR")
# Check what exists before creating anything below it, then the created path again.
HAVE=$UP
while [ ! -e "$HAVE" ] && [ ! -L "$HAVE" ]; do HAVE=$(dirname "$HAVE"); done
check_ancestors "$(readlink -f "$HAVE")"
[ -d "$UP" ] || (umask 022 && mkdir -p "$UP")
UP=$(readlink -f "$UP")
check_ancestors "$UP"
WORKDIR=${UP%/}/$(basename "$WORKDIR")
# mkdir never follows a symlink: it fails when anything already has the name.
[ -e "$WORKDIR" ] || [ -L "$WORKDIR" ] || mkdir -m 0700 "$WORKDIR" ||
    die 3 "WORKDIR: cannot create '$WORKDIR'"
[ ! -L "$WORKDIR" ] || die 3 "WORKDIR: '$WORKDIR' is a symlink; refusing it"
[ -d "$WORKDIR" ] || die 3 "WORKDIR: '$WORKDIR' is not a directory"
set -- $(owner_mode "$WORKDIR")
[ "$1" = 0 ] || die 3 "WORKDIR: '$WORKDIR' is owned by uid $1, not root; refusing it"
[ $((0$2 & 022)) = 0 ] ||
    die 3 "WORKDIR: '$WORKDIR' is writable by other users (mode $2); refusing it"
chmod 0700 "$WORKDIR"
LOCK=$WORKDIR/.lock
[ ! -L "$LOCK" ] || die 3 "WORKDIR: lock file '$LOCK' is a symlink; refusing it"

command -v debootstrap >/dev/null 2>&1 || die 3 "debootstrap is not installed"
[ -r "$ENTRYPOINT" ] || die 3 "entrypoint '$ENTRYPOINT' not readable"
[ -s "$KEYRING" ] || die 3 "keyring '$KEYRING' missing (install debian-archive-keyring)"
"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    die 3 "no docker engine reachable with '$DOCKER'"

# label_of IMAGE NAME: the image's label NAME, empty when either is missing.
label_of() {
    "$DOCKER" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null ||
        true
}
recipe_of() { label_of "$1" "$LABEL"; }

if command -v flock >/dev/null 2>&1; then
    # One build at a time per work dir; a waiting build then sees the finished image.
    exec 9>>"$LOCK"
    flock 9
fi

PRESENT=$(recipe_of "$TAG")
if [ "$PRESENT" = "$RECIPE" ] && [ "${PGSTEADY_REFRESH:-0}" != 1 ]; then
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
case $ROOTFS in "$WORKDIR"/build.?*/rootfs) ;; *) die 1 "unexpected rootfs path '$ROOTFS'" ;; esac
# The work directory is root's alone (checked above): no other uid can plant a symlink.
LOG=$WORKDIR/build-$SUITE-$VERSION.log
rm -f "$LOG"
: >"$LOG"

# umount_below DIR: unmount every mount below DIR (never DIR's parents), deepest first.
umount_below() {
    case $1 in "$WORKDIR"/build.?*) ;; *) die 1 "refusing to unmount below '$1'" ;; esac
    awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" || true; done
}

# --- 1. debootstrap: signed packages only --------------------------------------
# --force-check-gpg: a Release file that does not verify against the keyring aborts
# (without a keyring debootstrap only warns, and installs unsigned packages).
# util-linux provides setpriv, which the entrypoint uses to drop root privileges;
# pgbackrest archives WAL and takes and restores physical backups (point-in-time recovery);
# the two Prometheus exporters and PgBouncer run as services of the stack from this same image.
say "[1/5] debootstrap minbase $SUITE with postgresql-$VERSION${EXTRA_PACKAGES:+ $EXTRA_PACKAGES} from $MIRROR (log: $LOG)"
if ! debootstrap --variant=minbase --keyring="$KEYRING" --force-check-gpg \
    --include="$INCLUDE" \
    "$SUITE" "$ROOTFS" "$MIRROR" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die 1 "debootstrap failed; see $LOG"
fi
say "      debootstrap done after $(elapsed)"

# --- 2. security updates ----------------------------------------------------------
# The suite and its security suite. apt inside the rootfs checks the signatures with
# the rootfs's own debian-archive-keyring; no source is marked trusted.
say "[2/5] apt-get upgrade from $SUITE and $SUITE-security ($SECURITY_MIRROR)"
printf 'deb %s %s main\ndeb %s %s-security main\n' "$MIRROR" "$SUITE" \
    "$SECURITY_MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
chmod 0644 "$ROOTFS/etc/apt/sources.list"
# file: mirrors are host paths: bind them read-only at the same place in the rootfs.
for uri in "$MIRROR" "$SECURITY_MIRROR"; do
    case $uri in
        file:*)
            dir=/$(printf '%s' "${uri#file:}" | sed 's|^/*||')
            mkdir -p "$ROOTFS$dir"
            mountpoint -q "$ROOTFS$dir" || mount --bind -o ro "$dir" "$ROOTFS$dir"
            ;;
    esac
done
# No daemon may start inside the build (the postgresql packages' scripts would try).
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOTFS/proc"
if ! chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C /bin/sh -c \
    'apt-get -q update && apt-get -q -y -o Dpkg::Options::=--force-confold upgrade' \
    >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die 1 "apt-get upgrade in the rootfs failed; see $LOG"
fi
umount_below "$BUILD"
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
say "      upgrade done after $(elapsed)"

# --- 3. shape the root filesystem ---------------------------------------------
say "[3/5] configuring rootfs (postgres uid/gid $PG_UID:$PG_GID, entrypoint, trimming)"
BIN=/usr/lib/postgresql/$VERSION/bin
for f in "$BIN/postgres" "$BIN/initdb" "$BIN/pg_ctl" /usr/bin/psql /usr/bin/setpriv /bin/bash \
    /usr/bin/pgbackrest /usr/bin/prometheus-postgres-exporter /usr/bin/prometheus-node-exporter \
    /usr/sbin/pgbouncer; do
    [ -x "$ROOTFS$f" ] || die 1 "$f missing from the rootfs"
done
for pkg in $EXTRA_PACKAGES; do
    status=$(chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || die 1 "extra package $pkg is not installed in the rootfs"
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
# One digest of every installed package version: a refresh that changes nothing keeps
# the present image (and the running container).
# shellcheck disable=SC2016
PACKAGES=$(chroot "$ROOTFS" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort |
    sha256sum | cut -c1-64)
rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/i18n "$ROOTFS"/usr/share/lintian \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/var/cache/ldconfig/aux-cache "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
find "$ROOTFS/var/log" -type f -delete
# debootstrap copied the build host's resolver and name; docker provides its own.
: >"$ROOTFS/etc/resolv.conf"
echo localhost >"$ROOTFS/etc/hostname"
say "      rootfs is $(du -sm "$ROOTFS" | cut -f1) MB (postgresql-$VERSION $PG_FULL_VERSION)"

# --- 4. import ------------------------------------------------------------------
# Imported untagged first; the tag is set only after every check passed.
# tar's status is checked separately: POSIX sh has no pipefail.
say "[4/5] docker import"
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
LABEL $LABEL=$RECIPE io.pgsteady.postgres-version=$VERSION io.pgsteady.suite=$SUITE \
    io.pgsteady.postgres-package=$PG_FULL_VERSION io.pgsteady.packages=$PACKAGES
EOF
IMAGE_ID=$(DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --network none "$BUILD/context")
[ -n "$IMAGE_ID" ] || die 1 "docker build printed no image id"

# --- 5. check, then tag ---------------------------------------------------------
say "[5/5] smoke test and tag"
[ "$(recipe_of "$IMAGE_ID")" = "$RECIPE" ] || die 1 "imported image lacks label $LABEL=$RECIPE"
smoke=$("$DOCKER" run --rm --network none --entrypoint /bin/sh "$IMAGE_ID" -c \
    'postgres --version && pgbackrest version && setpriv --version >/dev/null &&
    prometheus-postgres-exporter --version 2>&1 | head -n 1 &&
    prometheus-node-exporter --version 2>&1 | head -n 1 &&
    pgbouncer --version | head -n 1 &&
    id -u postgres && id -g postgres')
printf '%s\n' "$smoke" | sed "s/^/$PROG:       /"
[ "$(printf '%s\n' "$smoke" | tail -n 2 | tr '\n' ' ')" = "$PG_UID $PG_GID " ] ||
    die 1 "postgres user in the image is not $PG_UID:$PG_GID"
if [ "$PRESENT" = "$RECIPE" ] && [ "$(label_of "$TAG" io.pgsteady.packages)" = "$PACKAGES" ]; then
    # Removing the labelled image also removes its untagged base.
    "$DOCKER" rmi "$IMAGE_ID" >/dev/null
    "$DOCKER" rmi "$BASE_ID" >/dev/null 2>&1 || true
    IMAGE_ID=
    BASE_ID=
    say "$TAG is current: no package changed (postgresql-$VERSION $PG_FULL_VERSION); kept it"
    exit 0
fi
"$DOCKER" tag "$IMAGE_ID" "$TAG"
IMAGE_ID=
BASE_ID=
size=$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")
say "built $TAG ($((size / 1048576)) MB, postgresql-$VERSION $PG_FULL_VERSION) in $(elapsed)"
