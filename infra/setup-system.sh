#!/usr/bin/env bash
# Installs the Debian packages cdx needs when they are missing (idempotent; no-op when present):
#   - postgresql (server binaries for the private test/demo cluster)
#   - unixodbc (libodbc.so.2, needed by pyodbc for SQL Server)
# Java 17 and Maven are prerequisites (see README); this script checks for them.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2'; then
  missing+=(unixodbc)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
fi
command -v java >/dev/null || { echo "error: Java 17 is required (apt-get install -y openjdk-17-jre-headless)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "error: Maven is required to fetch the Kafka jars (apt-get install -y maven)" >&2; exit 1; }
