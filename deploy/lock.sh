#!/usr/bin/env bash
# Regenerate requirements.lock: every runtime dependency of pyproject.toml (and theirs), pinned with
# their hashes, for every platform and Python >= 3.11 (`uv pip compile --universal`). Run it after
# changing [project.dependencies]; tests/unit/test_dependencies.py fails while the lock does not cover them.
# deploy/lib.sh (run.sh, test.sh) and deploy/Dockerfile install from the lock.
# uv comes from PyPI into a scratch virtualenv ($LOCK_VENV), not the project's .venv.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK_VENV="${LOCK_VENV:-/tmp/customer-import-lock}"
if [ ! -x "$LOCK_VENV/bin/uv" ]; then
  "${PYTHON:-python3}" -m venv "$LOCK_VENV"
  "$LOCK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5"
fi
cd "$REPO_ROOT"
"$LOCK_VENV/bin/uv" pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
  --quiet --custom-compile-command "deploy/lock.sh" -o requirements.lock "$@"
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pinned packages)"
