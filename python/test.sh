#!/usr/bin/env bash
# The Python package's tests: creates (or reuses) a virtual environment in
# python/.venv, installs maturin, pytest and numpy from PyPI, builds the
# extension into it (sharing the root crate's target directory, so memkin and
# wgpu compile once), builds the `memkin` binary the parity tests compare
# against, and runs pytest. Idempotent; run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${MEMKIN_VENV:-$here/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --disable-pip-version-check "maturin>=1.16,<2" pytest numpy

(cd "$root" && cargo build --release --bin memkin)
(cd "$here" && maturin develop --release --quiet)
cd "$here"
python -m pytest -q "$@"
