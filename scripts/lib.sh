# Shared by setup.sh and test.sh: system packages, the cargo target dir, the model cache.
# shellcheck shell=bash

# Debian packages the build needs: cmake and libclang for llama.cpp's bindings, python3-pip and
# npm to fetch model packages from their registries.
atelier_system_packages() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v cargo >/dev/null 2>&1 || { echo "error: cargo is not installed (https://rustup.rs)" >&2; exit 1; }
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# One target dir outside the checkout, shared by every clone on this machine (a cold build of
# llama.cpp alone takes ~16 minutes on 2 cores). The build targets the host CPU
# (.cargo/config.toml: target-cpu=native), so the dir is named after the CPU model rustc detects:
# a home directory moved to another machine rebuilds instead of running instructions that CPU
# lacks.
atelier_host_cpu() {
  rustc --print target-cpus 2>/dev/null | sed -n 's/.*currently \([A-Za-z0-9_.-]*\).*/\1/p' | head -n 1
}

atelier_target_dir() {
  if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    local cpu
    cpu="$(atelier_host_cpu)"
    export CARGO_TARGET_DIR="$HOME/.cache/atelier/target-${cpu:-unknown}"
  fi
  mkdir -p "$CARGO_TARGET_DIR"
}

# The one build every script runs: the whole workspace with every target. Cargo unifies
# features per build, so `-p atelier-web` and `--workspace --all-targets` compile tokio, hyper,
# axum and the rest differently; one command everywhere means setup, tests and benchmarks share
# one compiled tree instead of rebuilding it in turn.
atelier_build() {
  cargo build --locked --workspace --all-targets
}

# The model cache, shared by every data directory on the machine.
atelier_models_dir() {
  export ATELIER_MODELS="${ATELIER_MODELS:-$HOME/.cache/atelier/models}"
  mkdir -p "$ATELIER_MODELS"
}

# llama.cpp's OpenMP threads must not spin while they wait: with 2 cores and other work
# running, spinning threads collapse decoding speed.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# What the client tests drive: Debian's Chromium with playwright-core (npm, pinned by
# web/tests/browser/package-lock.json), and the official `openai` Python package in a virtualenv
# outside the checkout. Both tests are then required rather than skipped.
atelier_test_clients() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing system packages: chromium" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  command -v node >/dev/null 2>&1 || { echo "error: node is not installed (apt-get install nodejs npm)" >&2; exit 1; }
  (cd web/tests/browser && npm ci --no-audit --no-fund --silent)
  local venv="$HOME/.cache/atelier/venv-openai"
  if ! "$venv/bin/python" -c "import openai" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "openai==3.57.0"
  fi
  export ATELIER_OPENAI_PYTHON="$venv/bin/python"
  export ATELIER_REQUIRE_BROWSER=1 ATELIER_REQUIRE_CLIENTS=1
}

# The PostgreSQL server the metadata-database tests use (a scratch database per test on
# $ATELIER_TEST_POSTGRES_URL, default the local server with trust auth). Started when it is
# installed but down; installed from Debian's packages when missing.
atelier_test_services() {
  export ATELIER_TEST_POSTGRES_URL="${ATELIER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  case "$ATELIER_TEST_POSTGRES_URL" in
    *@127.0.0.1:5432/*|*@localhost:5432/*) ;;
    *) return 0 ;; # somebody else's server: theirs to run
  esac
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing system packages: postgresql" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  echo "starting PostgreSQL" >&2
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  $sudo pg_ctlcluster "$version" main start || $sudo service postgresql start
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432 >&2
}

# The benchmark scripts' reference runtimes (PyTorch CPU with the packages named), in one
# virtualenv beside the model cache; sets $bench_python. Installed once (~10 minutes and several
# GB: PyPI's torch wheel is the CUDA build). Usage: atelier_bench_venv "import x, y" pkg...
atelier_bench_venv() {
  local check="$1"
  shift
  local venv="${ATELIER_BENCH_VENV:-$HOME/.cache/atelier/bench-venv}"
  if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$@"
  fi
  bench_python="$venv/bin/python"
}
