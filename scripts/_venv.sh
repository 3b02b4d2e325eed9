# Sourced by scripts/run and scripts/test: make .venv with the project installed (once per
# pyproject.toml change). Needs Python 3.11+ and a package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"

# Python 3.11 or newer (pyproject's requires-python).
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

py="${PYTHON:-}"
if [ -n "$py" ]; then
  python_ok "$py" || { echo "scripts: PYTHON=$py is not a Python 3.11 or newer" >&2; exit 1; }
else
  for candidate in python3.11 python3.12 python3.13 python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      py="$candidate"
      break
    fi
  done
  [ -n "$py" ] || {
    echo "scripts: needs Python 3.11 or newer (python3.11 ... python3.14 or python3 on PATH," \
      "or PYTHON=/path/to/python)" >&2
    exit 1
  }
fi
# A .venv without pip is made again: one made where ensurepip is missing (Debian and Ubuntu
# without python3-venv: `python3 -m venv` stops after creating it, and says to install the
# package and recreate it), or one that was interrupted; also one of a Python older than 3.11.
if [ -e .venv ] && ! .venv/bin/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' \
  >/dev/null 2>&1; then
  echo "scripts: .venv has no pip or an older Python: making it again" >&2
  "$py" -m venv --clear .venv
elif [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.helpdesk-installed${extras:+-$extras}"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi
