#!/usr/bin/env bash
# Azurite, the real storage server the tests talk to (pinned in tests/node/package.json).
set -euo pipefail
cd "$(dirname "$0")/../tests/node"
if [ -x node_modules/.bin/azurite-blob ] && [ node_modules/.package-lock.json -nt package.json ]; then exit 0; fi
npm install --no-audit --no-fund --loglevel=error
