#!/usr/bin/env bash
# Makes the machine's PostgreSQL and MariaDB ready for Confluo's tests, idempotently:
# both running, PostgreSQL with wal_level=logical (logical replication), MariaDB with the
# binary log in ROW format with full row images (binlog CDC), NATS with JetStream, Mosquitto,
# RabbitMQ with the stream plugin, and a Kafka-protocol broker (tansu, built once into a
# cache outside the clone, with SQLite storage) on 127.0.0.1:9092. Safe to run again and
# again.
set -euo pipefail

log() { printf '[setup-services] %s\n' "$*"; }

pg_cluster() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

start_postgres() {
  local v; v=$(pg_cluster)
  [ -n "$v" ] || { log "PostgreSQL is not installed"; return 1; }
  pg_ready || pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  for _ in $(seq 1 60); do pg_ready && return 0; sleep 1; done
  log "PostgreSQL did not start"; return 1
}

psql_root() { psql -h 127.0.0.1 -U postgres -d postgres -Atq "$@" 2>/dev/null || psql -h 127.0.0.1 -d postgres -Atq "$@"; }

setup_postgres() {
  start_postgres
  local level; level=$(psql_root -c "SHOW wal_level")
  if [ "$level" != "logical" ]; then
    log "PostgreSQL wal_level=$level; switching to logical and restarting"
    psql_root -c "ALTER SYSTEM SET wal_level = logical"
    psql_root -c "ALTER SYSTEM SET max_replication_slots = 64"
    psql_root -c "ALTER SYSTEM SET max_wal_senders = 64"
    pg_ctlcluster --skip-systemctl-redirect "$(pg_cluster)" main restart
    for _ in $(seq 1 60); do pg_ready && break; sleep 1; done
  fi
  log "PostgreSQL ready (wal_level=$(psql_root -c 'SHOW wal_level'))"
}

maria() { mariadb -h 127.0.0.1 -P 3306 -u root -N -B "$@" 2>/dev/null || mysql -h 127.0.0.1 -P 3306 -u root -N -B "$@"; }
maria_ready() { maria -e "SELECT 1" >/dev/null 2>&1; }

start_mariadb() {
  maria_ready && return 0
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 1 60); do maria_ready && return 0; sleep 1; done
  log "MariaDB did not start"; return 1
}

setup_mariadb() {
  local conf=/etc/mysql/mariadb.conf.d/99-confluo-binlog.cnf
  if [ ! -f "$conf" ]; then
    mkdir -p "$(dirname "$conf")"
    cat > "$conf" <<'CNF'
# Written by Confluo's scripts/setup-services.sh: binary log for change data capture.
[mysqld]
server_id        = 1
log_bin          = mysql-bin
binlog_format    = ROW
binlog_row_image = FULL
expire_logs_days = 2
CNF
  fi
  # The machine's my.cnf may not read the conf.d folder: make it.
  if [ -f /etc/mysql/my.cnf ] && ! grep -q "mariadb.conf.d" /etc/mysql/my.cnf; then
    printf '\n!includedir /etc/mysql/mariadb.conf.d/\n' >> /etc/mysql/my.cnf
  fi
  start_mariadb
  local logbin fmt
  logbin=$(maria -e "SELECT @@log_bin")
  fmt=$(maria -e "SELECT @@binlog_format")
  if [ "$logbin" != "1" ] || [ "$fmt" != "ROW" ]; then
    log "MariaDB binlog off or not ROW (log_bin=$logbin, format=$fmt); restarting with $conf"
    maria -e "SHUTDOWN" || mysqladmin -h 127.0.0.1 -u root shutdown || true
    # Wait for the old server process to exit, not just to stop answering.
    for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || break; sleep 1; done
    start_mariadb
  fi
  log "MariaDB ready (log_bin=$(maria -e 'SELECT @@log_bin'), format=$(maria -e 'SELECT @@binlog_format'))"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

setup_nats() {
  local bin; bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  [ -x "$bin" ] || { log "nats-server is not installed"; return 1; }
  if ! port_open 4222; then
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
    for _ in $(seq 1 30); do port_open 4222 && break; sleep 1; done
  fi
  port_open 4222 || { log "NATS did not start"; return 1; }
  log "NATS ready (127.0.0.1:4222, JetStream)"
}

setup_mosquitto() {
  # A persistent session queues QoS 1 messages for a consumer that acknowledges only after
  # each commit; Mosquitto's default limit (1000 per client) silently drops the rest.
  local conf=/etc/mosquitto/mosquitto.conf
  if [ -f "$conf" ] && ! grep -q '^max_queued_messages' "$conf"; then
    log "Mosquitto: no limit on queued messages per session; restarting it"
    printf '\n# Written by Confluo'"'"'s scripts/setup-services.sh: keep every queued QoS 1 message.\nmax_queued_messages 0\n' >> "$conf"
    pkill -x mosquitto || true
    for _ in $(seq 1 30); do port_open 1883 || break; sleep 1; done
  fi
  if ! port_open 1883; then
    mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
    for _ in $(seq 1 30); do port_open 1883 && break; sleep 1; done
  fi
  port_open 1883 || { log "Mosquitto did not start"; return 1; }
  log "Mosquitto ready (127.0.0.1:1883)"
}

setup_rabbitmq() {
  if ! port_open 5672; then
    rabbitmq-server -detached || true
    for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
  fi
  port_open 5672 || { log "RabbitMQ did not start"; return 1; }
  # Streams (exactly-once offsets) need the stream plugin, on port 5552.
  if ! port_open 5552; then
    rabbitmq-plugins enable rabbitmq_stream >/dev/null
    for _ in $(seq 1 60); do port_open 5552 && break; sleep 1; done
  fi
  port_open 5552 || { log "RabbitMQ's stream plugin did not start"; return 1; }
  log "RabbitMQ ready (127.0.0.1:5672, streams on 5552)"
}

# tansu: a Kafka-protocol broker in Rust (no JVM, no Docker). Built once (~13 min cold) into
# $CONFLUO_TOOLS (default ~/.cache/confluo-tools); tests start their own brokers from it on
# free ports, and one runs on 9092 for the README's examples.
TANSU_VERSION=0.6.0
tools_dir() { echo "${CONFLUO_TOOLS:-$HOME/.cache/confluo-tools}"; }

install_tansu() {
  local root; root=$(tools_dir)
  if [ -x "$root/bin/tansu" ] && [ "$(cat "$root/tansu.version" 2>/dev/null)" = "$TANSU_VERSION" ]; then
    return 0
  fi
  log "building tansu $TANSU_VERSION into $root (once; about 13 minutes on 2 cores)"
  mkdir -p "$root"
  CARGO_TARGET_DIR="$root/build" cargo install tansu --version "$TANSU_VERSION" --locked \
    --features libsql --root "$root" >"$root/install.log" 2>&1 \
    || { tail -n 30 "$root/install.log"; log "tansu did not build"; return 1; }
  rm -rf "$root/build"
  echo "$TANSU_VERSION" > "$root/tansu.version"
}

setup_kafka() {
  install_tansu
  if ! port_open 9092; then
    local data=/var/lib/confluo-tansu
    mkdir -p "$data"
    start-stop-daemon --start --oknodo --background --chdir "$data" --exec "$(tools_dir)/bin/tansu" -- \
      broker --storage-engine sqlite://tansu.db \
      --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 || true
    for _ in $(seq 1 30); do port_open 9092 && break; sleep 1; done
  fi
  port_open 9092 || { log "tansu did not start"; return 1; }
  log "Kafka (tansu) ready (127.0.0.1:9092)"
}

# socat (with OpenSSL) puts TLS in front of the test brokers: tansu 0.6 cannot be given
# both --cert and --key.
install_socat() {
  command -v socat >/dev/null 2>&1 && return 0
  log "installing socat"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q socat >/dev/null; }
}

# The clients the Postgres endpoint is tested with: psql (with the server), and the
# PostgreSQL JDBC driver run by the machine's Java.
install_pg_clients() {
  command -v psql >/dev/null 2>&1 && [ -f /usr/share/java/postgresql.jar ] && return 0
  log "installing the PostgreSQL client and JDBC driver"
  local pkgs="postgresql-client libpostgresql-jdbc-java"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null; }
}

install_socat
install_pg_clients
setup_postgres
setup_mariadb
setup_nats
setup_mosquitto
setup_rabbitmq
setup_kafka
