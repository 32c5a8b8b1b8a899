#!/usr/bin/env bash
# Make sure a PostgreSQL answers on 127.0.0.1:5432 for the tests (user postgres, trust auth).
# This project's machines run PostgreSQL 15 already; this starts it if it stopped, and on a
# bare Debian machine installs it from Debian's packages and opens loopback with trust auth.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then exit 0; fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
  sed -i 's/^\(host\s\+all\s\+all\s\+127.0.0.1\/32\s\+\)\S\+/\1trust/' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 0.2; done
echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
exit 1
