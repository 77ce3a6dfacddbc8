#!/usr/bin/env bash
# Installs one optional extra at an exact version without letting pip replace torch: it is
# resolved under a constraint on the installed CPU build. Does nothing when that version is
# already installed; afterwards runs CHECK (Python code) to prove the install works.
#   bash scripts/install_extra.sh DISTRIBUTION VERSION CHECK
set -euo pipefail
name="$1"; version="$2"; check="$3"
if python -c "import importlib.metadata as m; assert m.version('$name') == '$version'" 2>/dev/null; then
    echo "$name $version already installed"; exit 0
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0+cpu" > "$constraints"
python -m pip install -q -c "$constraints" "$name==$version" "torch==2.13.0+cpu"
python -c "$check"
