#!/usr/bin/env bash
# Installs the Debian packages tiktok-forwarder needs to build, test and benchmark.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

packages=(
  libsqlite3-dev        # the outbox store links the system SQLite
  libcurl4-openssl-dev  # the HTTP transport
  libssl-dev            # SHA-256 via libcrypto (libcurl4-openssl-dev does not pull it in)
  sqlite3               # the operator's shell; tests run the README's SQL through it
  pkg-config            # SwiftPM finds the libraries above through it
  python3               # the event generator, README snippets and the Python peer in benchmarks
  curl                  # tests read the sandbox's stats endpoint with it
  systemd               # systemd-analyze: tests verify the unit and rate its exposure (nothing is started)
  openssl               # tests make a self-signed certificate (a TLS endpoint that does not verify)
  util-linux            # setpriv and unshare: tests run producers and the daemon under other uids, hide the toolchain
  binutils              # strip, for the Debian package
  libpq-dev             # the PostgreSQL store links the system libpq
  postgresql            # tests and benchmarks start a throw-away server (initdb + pg_ctl in a temp dir)
  python3-psycopg       # tests run the README's Python producer snippet for PostgreSQL
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present (${packages[*]})"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
