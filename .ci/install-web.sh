#!/usr/bin/env bash
# The web view's browser tests drive Debian's chromium through Playwright
# (executable_path=/usr/bin/chromium); Playwright never downloads a browser here.
# Idempotent: installs only what is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3 4 5 6; do
  # Another installer may hold the dpkg lock for a while: wait and retry.
  if apt-get install -y --no-install-recommends chromium; then
    exit 0
  fi
  if [ "$attempt" -eq 1 ]; then apt-get update || true; fi
  sleep 10
done
echo "could not install chromium (apt-get install -y chromium)" >&2
exit 1
