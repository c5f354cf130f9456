#!/usr/bin/env bash
# Make the editable checkout's azure/identity/broker importable next to Microsoft's
# azure-identity (a regular package whose __path__ never includes src/): link it into
# site-packages/azure/identity/. See docs/decisions.md (2026-11-29, development installs).
set -euo pipefail
python=${1:-python3}
target=$("$python" -c 'import azure.identity, os; print(os.path.dirname(azure.identity.__file__))')
src="$(cd "$(dirname "$0")/.." && pwd)/src/azure/identity/broker"
if [ -e "$target/broker" ] && [ ! -L "$target/broker" ]; then
  echo "error: $target/broker is a real directory (Microsoft's azure-identity-broker?)." >&2
  echo "       Uninstall azure-identity-broker from this environment first." >&2
  exit 1
fi
ln -sfn "$src" "$target/broker"
