# Sourced by scripts/test and scripts/demo: make .venv if missing and install steplog into it
# (again only when pyproject.toml changed since the last successful install).
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "scripts/test: steplog needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2; exit 2; }
  "$PYTHON" -m venv .venv
fi

# Re-install only when pyproject.toml differs from the last successful install into this venv.
stamp=.venv/.steplog-install-stamp
want=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "scripts/test: installing steplog and its dependencies into .venv" >&2
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]' > .venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    echo "scripts/test: pip install failed; the whole log is .venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
