#!/bin/sh
# The trusted-timestamp tests (#14) run a local RFC 3161 authority with the openssl
# command-line tool (`openssl ts -reply`) and check packets with `openssl ts -verify`.
# Installs it only when absent; idempotent.
set -eu
if ! command -v openssl >/dev/null 2>&1; then
    apt-get update -q
    apt-get install -y -q openssl
fi
