#!/usr/bin/env bash
# Installs tiktok-forwarder from source as a systemd service (the Debian package built by
# scripts/package-deb is the usual way; this is for hosts without it). Idempotent: a second
# run changes nothing.
#
#   sudo scripts/install.sh                    # build (release) and install into /
#   scripts/install.sh --dry-run               # print what it would do, change nothing
#   scripts/install.sh --prefix /tmp/stage     # install under a staging root (no user, no chown)
#   scripts/install.sh --binary PATH           # install this binary instead of building
#
# Lays out:
#   PREFIX/usr/local/bin/tiktok-forwarder
#   PREFIX/etc/systemd/system/tiktok-forwarder.service
#   PREFIX/etc/tiktok-forwarder/tiktok-forwarder.env        (kept if present: it is yours)
#   PREFIX/etc/tiktok-forwarder/config.example.yaml
#   PREFIX/usr/local/share/doc/tiktok-forwarder/README.md
#   PREFIX/var/lib/tiktok-forwarder/outbox.sqlite           (migrated; group-writable, setgid dir)
# and, when installing into /, the system user and group tiktok-forwarder.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=""
dry_run=0
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2%/}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; prefix="${prefix%/}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --binary) binary="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
real_root=0
[ -z "$prefix" ] && real_root=1

run() {
  if [ "$dry_run" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

# Copies only when the content differs, so a second run leaves files (and mtimes) alone.
put() {  # mode source destination
  local mode="$1" src="$2" dst="$3"
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    return
  fi
  run install -D -m "$mode" "$src" "$dst"
  [ "$dry_run" = 1 ] || echo "installed $dst"
}

if [ -z "$binary" ]; then
  export PATH="/opt/swift/usr/bin:$PATH"
  if [ "$dry_run" = 1 ]; then
    echo "would run: swift build -c release --product tiktok-forwarder"
    binary="$(swift build -c release --show-bin-path 2>/dev/null || echo .build/release)/tiktok-forwarder"
  else
    swift build -c release --product tiktok-forwarder >/dev/null
    binary="$(swift build -c release --show-bin-path)/tiktok-forwarder"
  fi
fi
[ "$dry_run" = 1 ] || [ -x "$binary" ] || { echo "install.sh: no binary at $binary" >&2; exit 1; }

state="$prefix/var/lib/tiktok-forwarder"
put 0755 "$binary" "$prefix/usr/local/bin/tiktok-forwarder"
# The unit names the package's paths; a source install lives under /usr/local.
unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
sed -e 's|/usr/bin/tiktok-forwarder|/usr/local/bin/tiktok-forwarder|' -e 's|/usr/share/doc/tiktok-forwarder|/usr/local/share/doc/tiktok-forwarder|' \
  systemd/tiktok-forwarder.service > "$unit_tmp"
put 0644 "$unit_tmp" "$prefix/etc/systemd/system/tiktok-forwarder.service"
put 0644 tiktok-forwarder.example.yaml "$prefix/etc/tiktok-forwarder/config.example.yaml"
put 0644 README.md "$prefix/usr/local/share/doc/tiktok-forwarder/README.md"
if [ ! -e "$prefix/etc/tiktok-forwarder/tiktok-forwarder.env" ]; then
  put 0640 systemd/tiktok-forwarder.env "$prefix/etc/tiktok-forwarder/tiktok-forwarder.env"
fi

if [ "$real_root" = 1 ]; then
  if ! getent group tiktok-forwarder >/dev/null; then run groupadd --system tiktok-forwarder; fi
  if ! getent passwd tiktok-forwarder >/dev/null; then
    run useradd --system --gid tiktok-forwarder --home-dir /var/lib/tiktok-forwarder --no-create-home \
      --shell /usr/sbin/nologin --comment "tiktok-forwarder daemon" tiktok-forwarder
  fi
fi
if [ ! -d "$state" ]; then run install -d -m 2770 "$state"; [ "$dry_run" = 1 ] || echo "created $state"; fi
if [ "$real_root" = 1 ]; then
  [ "$(stat -c %U:%G "$state" 2>/dev/null)" = "tiktok-forwarder:tiktok-forwarder" ] || run chown tiktok-forwarder:tiktok-forwarder "$state"
  [ "$(stat -c %G "$prefix/etc/tiktok-forwarder/tiktok-forwarder.env" 2>/dev/null)" = "tiktok-forwarder" ] || \
    run chgrp tiktok-forwarder "$prefix/etc/tiktok-forwarder/tiktok-forwarder.env"
fi

db="$state/outbox.sqlite"
if [ "$dry_run" = 1 ]; then
  echo "would run: $prefix/usr/local/bin/tiktok-forwarder migrate --db $db"
else
  # The schema level is PRAGMA user_version: 4 big-endian bytes at offset 60 of the file.
  # Reading it from the header (not through SQLite, which would create and remove the -wal
  # and -shm files) keeps a second run from touching anything.
  level="$( [ -f "$db" ] && od -An -tu1 -j60 -N4 "$db" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}' || echo 0)"
  latest="$(ls migrations/[0-9]*.sql | wc -l)"
  if [ "$level" != "$latest" ]; then
    (umask 0007 && "$prefix/usr/local/bin/tiktok-forwarder" migrate --db "$db")
  fi
  # Producers in the group write the database and create its -wal/-shm files: all 0660 and
  # in the group (databases made by older versions were 0640 or 0644).
  for f in "$db" "$db-wal" "$db-shm"; do
    [ -e "$f" ] || continue
    [ "$(stat -c %a "$f")" = "660" ] || { chmod 0660 "$f"; echo "made $f group-writable (0660)"; }
    if [ "$real_root" = 1 ]; then
      [ "$(stat -c %U:%G "$f")" = "tiktok-forwarder:tiktok-forwarder" ] || chown tiktok-forwarder:tiktok-forwarder "$f"
    fi
  done
fi

cat <<NEXT

Next steps:
  1. Put the access token in a root-only file (it is passed to the service as a credential):
       sudo install -m 600 /dev/stdin $prefix/etc/tiktok-forwarder/access-token    # paste, then Ctrl-D
  2. Set the pixel code:   sudo \$EDITOR $prefix/etc/tiktok-forwarder/tiktok-forwarder.env
     and check it exactly as the service will run it (its user, credential and environment):
       sudo systemd-run --wait --pipe --quiet -p User=tiktok-forwarder -p Group=tiktok-forwarder \\
         -p LoadCredential=access-token:/etc/tiktok-forwarder/access-token \\
         -p EnvironmentFile=/etc/tiktok-forwarder/tiktok-forwarder.env \\
         -p Environment=TIKTOK_FORWARDER_DB=/var/lib/tiktok-forwarder/outbox.sqlite \\
         $prefix/usr/local/bin/tiktok-forwarder config check
  3. Let producers write the outbox: add their users to the group (then restart the producer)
       sudo usermod -aG tiktok-forwarder <producer-user>
  4. Start it:  sudo systemctl daemon-reload && sudo systemctl enable --now tiktok-forwarder
     Watch it:  $prefix/usr/local/bin/tiktok-forwarder status --db $db --watch
  To rotate the token later: write the new one to the same file, then
     sudo systemctl restart tiktok-forwarder     (graceful: requests in flight finish)
NEXT
