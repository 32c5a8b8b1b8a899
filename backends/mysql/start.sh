#!/usr/bin/env bash
# Make sure a MariaDB answers on 127.0.0.1:3306 for the tests (root, empty password).
# This project's machines run MariaDB 10.11 already; this starts it if it stopped, and on a
# bare Debian machine installs it from Debian's packages and lets root in over TCP.
set -euo pipefail
up() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
if up; then exit 0; fi
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq mariadb-server >/dev/null
  fresh=1
fi
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
for _ in $(seq 100); do
  if up; then exit 0; fi
  if [ "${fresh:-0}" = 1 ] && mysqladmin ping >/dev/null 2>&1; then
    mysql -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('')" || true
    fresh=0
  fi
  sleep 0.2
done
echo "MariaDB did not start on 127.0.0.1:3306" >&2
exit 1
