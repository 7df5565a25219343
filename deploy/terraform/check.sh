#!/bin/sh
# Offline checks of the Terraform module (no cloud account, no terraform binary here):
# every .tf file must parse (python-hcl2) and checkov must find nothing unskipped.
# Needs .venv-deploy (`make install-deploy`). Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${DEPLOY_VENV:-$root/.venv-deploy}
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    echo "check.sh: $venv is missing; run make install-deploy" >&2
    exit 2
fi
"$py" - "$here" <<'PY'
import sys
from pathlib import Path

import hcl2

files = sorted(Path(sys.argv[1]).glob("*.tf"))
if not files:
    sys.exit("no .tf files")
for path in files:
    with path.open() as handle:
        hcl2.load(handle)
    print(f"parsed {path.name}")
PY
# --skip-download: no network here (checkov would fetch guideline links and custom policies).
"$venv/bin/checkov" -d "$here" --framework terraform --quiet --compact --skip-download
