#!/usr/bin/env bash
# The e-mail watcher's tests run a real Dovecot IMAP server (started by a pytest fixture
# in a temporary directory with its own config). Installs it only when absent; the
# package's own service is not started (the fixture runs its own instance).
set -euo pipefail
if ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/imap ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends dovecot-imapd >/dev/null
fi
