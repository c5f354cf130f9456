#!/usr/bin/env bash
# A separate venv with Microsoft's own client stack (azure-identity-broker, msal, pymsalruntime)
# for the compatibility tests. It must stay apart from .venv: azure-identity-broker installs the
# same azure/identity/broker/ files as authbroker. Usage: scripts/microsoft-venv.sh [DIR]
set -euo pipefail
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/tests/.venv-microsoft"}
packages=(azure-identity-broker==1.3.0 msal==1.39.0 pymsalruntime==0.20.7)
stamp="$dir/.ready"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${packages[*]}" ]; then exit 0; fi
# The tests point REQUESTS_CA_BUNDLE at a local authority's bundle; pip needs the machine's trust.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
"${PYTHON:-python3.11}" -m venv --clear "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
echo "${packages[*]}" > "$stamp"
