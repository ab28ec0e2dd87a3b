#!/usr/bin/env bash
# System tools the tests use on every machine: the sqlite3 shell (the README's backup
# recipe is run as written). Installs only what is absent.
set -euo pipefail
if ! command -v sqlite3 >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
fi
