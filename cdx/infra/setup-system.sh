#!/usr/bin/env bash
# Installs the Debian packages cdx needs when they are missing (idempotent; no-op when present):
#   - postgresql (server binaries for the private test/demo cluster)
#   - unixodbc (libodbc.so.2, needed by pyodbc for SQL Server)
#   - openjdk-17-jre-headless (runs the Kafka broker; also when the java found is older than 17)
#   - maven (resolves the official Kafka jars from Maven Central)
set -euo pipefail

java_major() {
  # Major version of the `java` on PATH (0 when there is none): "17.0.15" -> 17, "1.8.0_392" -> 8.
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  local version
  version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  case "$version" in
    1.*) version=${version#1.} ;;
  esac
  version=${version%%[.+-]*}
  case "$version" in
    ''|*[!0-9]*) echo 0 ;;
    *) echo "$version" ;;
  esac
}

missing=()
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2'; then
  missing+=(unixodbc)
fi
if [ "$(java_major)" -lt 17 ]; then
  missing+=(openjdk-17-jre-headless)
fi
if ! command -v mvn >/dev/null 2>&1; then
  missing+=(maven)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  hash -r
fi
if [ "$(java_major)" -lt 17 ]; then
  echo "error: Java 17 is required (apt-get install -y openjdk-17-jre-headless; update-alternatives --config java)" >&2
  exit 1
fi
command -v mvn >/dev/null || { echo "error: Maven is required to fetch the Kafka jars (apt-get install -y maven)" >&2; exit 1; }
