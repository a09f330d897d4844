#!/usr/bin/env bash
# Integrations: build, run and test.
#
#   ./build.sh run [--urls URL]   run the API locally (Development) against a project-local
#                                 PostgreSQL unless ConnectionStrings__Integrations is set
#   ./build.sh stop-db            stop the project-local PostgreSQL started by `run`
#   ./build.sh test               build (analyzers are errors), check formatting (dotnet format
#                                 --verify-no-changes) and run every test project against a throwaway
#                                 PostgreSQL; last line: "N passed, N failed[, N skipped]" (a formatting
#                                 failure counts as one failed)
#   ./build.sh bench [--smoke] [--stages a,b]
#                                 the benchmark suite (bench/) against a throwaway PostgreSQL with
#                                 default durability; writes the results into bench/README.md
#                                 (--smoke: tiny sizes, report to bench/results/smoke.md)
#
# Configuration (environment):
#   ConnectionStrings__Integrations   Npgsql connection string the API logs in with for requests (run);
#                                     unset: local cluster in .data/postgres (eng/pg.sh; as root it runs
#                                     as the postgres user, in /tmp/integrations-pg-<hash> if .data is
#                                     unreachable), the API as integrations_service (eng/pg.sh service)
#   ConnectionStrings__IntegrationsOwner  the tables' owner: migrations and create-api-key (run); unset
#                                     with the local cluster: its superuser; unset otherwise: the above
#   Integrations__Vault__MasterKey    base64 of 32 bytes; unset: generated once into .data/master-key
#   INTEGRATIONS_URLS                 bind URL when --urls is not given (default http://127.0.0.1:8080)
#   INTEGRATIONS_TEST_DB              set by `test` for the test fixture (a superuser connection string)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
DATA="$ROOT/.data"
API_PROJECT="src/Integrations.Api"
SOLUTION="Integrations.sln"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# English tool output: the test summary fallback parses VSTest's console lines
export DOTNET_CLI_UI_LANGUAGE=en VSLANG=1033

usage() {
  cat >&2 <<'EOF'
usage: ./build.sh <command>
  run [--urls URL]   build and run the API (Development) with a local PostgreSQL,
                     a development master key and a development API key (kept in .data/)
  stop-db            stop the local PostgreSQL started by `run`
  test               run all tests against a throwaway PostgreSQL
  bench [--smoke] [--stages pipeline,startup,query,audit,tools-invoke]
                     run the benchmark suite against a throwaway PostgreSQL and write
                     the report (bench/README.md; --smoke: bench/results/smoke.md)
EOF
  exit 2
}

die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- run

api_dll() {
  local dll
  dll=$(ls -t "$API_PROJECT"/bin/Release/*/Integrations.Api.dll 2>/dev/null | head -n 1 || true)
  [ -n "$dll" ] || die "built Integrations.Api.dll not found under $API_PROJECT/bin/Release"
  printf '%s\n' "$ROOT/$dll"
}

cmd_run() {
  local url=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --urls) [ $# -ge 2 ] || usage; url=$2; shift 2 ;;
      --urls=*) url=${1#--urls=}; shift ;;
      *) printf 'build.sh: unknown argument for run: %s\n' "$1" >&2; usage ;;
    esac
  done
  [ -n "$url" ] || url=${INTEGRATIONS_URLS:-http://127.0.0.1:8080}
  url=${url%/}

  mkdir -p "$DATA"
  chmod 711 "$DATA"   # traversable (not listable): the postgres OS user reaches .data/postgres
  export ASPNETCORE_ENVIRONMENT=Development DOTNET_ENVIRONMENT=Development

  local local_db=0
  if [ -z "${ConnectionStrings__Integrations:-}" ]; then
    ConnectionStrings__IntegrationsOwner=$(eng/pg.sh start "$DATA/postgres")
    ConnectionStrings__Integrations=$(eng/pg.sh service "$DATA/postgres")
    export ConnectionStrings__Integrations ConnectionStrings__IntegrationsOwner
    local_db=1
  fi
  # Audit chain heads are anchored outside the database, here next to it.
  export Integrations__Audit__AnchorFile=${Integrations__Audit__AnchorFile:-$DATA/audit-anchors.jsonl}

  if [ -z "${Integrations__Vault__MasterKey:-}" ]; then
    if [ ! -s "$DATA/master-key" ]; then
      (umask 077; head -c 32 /dev/urandom | base64 >"$DATA/master-key")
      echo "Generated a development master key in .data/master-key" >&2
    fi
    Integrations__Vault__MasterKey=$(tr -d '\n' <"$DATA/master-key")
    export Integrations__Vault__MasterKey
  fi

  echo "Building $API_PROJECT (Release)..." >&2
  dotnet build "$API_PROJECT" -c Release -nologo -v quiet -clp:NoSummary
  local dll
  dll=$(api_dll)

  echo "Applying migrations..." >&2
  dotnet "$dll" migrate

  local key=""
  if [ -s "$DATA/dev-api-key" ]; then
    key=$(tr -d '\r\n' <"$DATA/dev-api-key")
    if ! dotnet "$dll" check-api-key "$key" >/dev/null 2>&1; then
      echo "The saved development API key is not valid here: creating a new one" >&2
      key=""
    fi
  fi
  if [ -z "$key" ]; then
    local out
    out=$(dotnet "$dll" create-api-key --tenant dev \
      --scopes integrations:read,integrations:write,tools:invoke,admin --name dev)
    key=$(printf '%s\n' "$out" | tr -d '\r' | sed '/^[[:space:]]*$/d' | tail -n 1)
    key=${key//[[:space:]]/}
    [ -n "$key" ] || die "create-api-key printed no key"
    (umask 077; printf '%s\n' "$key" >"$DATA/dev-api-key")
    chmod 600 "$DATA/dev-api-key"
  fi

  echo "API: $url"
  echo "OpenAPI: $url/openapi/v1.json"
  echo "Swagger UI: $url/docs"
  echo "API key: $key"
  if [ "$local_db" = 1 ]; then
    echo "PostgreSQL (.data/postgres) keeps running after the API stops; stop it with: ./build.sh stop-db"
  fi
  echo "Press Ctrl-C to stop the API."
  if [ -n "${ConnectionStrings__IntegrationsOwner:-}" ]; then
    # Migrated above as the owner: the API itself logs in without the owner's password.
    exec env -u ConnectionStrings__IntegrationsOwner Integrations__Database__MigrateOnStart=false \
      dotnet "$dll" --urls "$url" --contentRoot "$(dirname "$dll")"
  fi
  exec dotnet "$dll" --urls "$url" --contentRoot "$(dirname "$dll")"
}

cmd_stop_db() {
  eng/pg.sh stop "$DATA/postgres"
}

# ---------------------------------------------------------------- test

TEST_TMP=""
cleanup_test() {
  local rc=$?
  if [ -n "$TEST_TMP" ]; then
    # silent: the summary must stay the last line printed
    eng/pg.sh destroy "$TEST_TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TEST_TMP" 2>/dev/null || true
  fi
  exit "$rc"
}

# Prints "passed failed skipped total files" summed over the TRX files in $1.
sum_trx() {
  local dir=$1 f c p=0 fl=0 s=0 t=0 n=0 v
  attr() { v=$(printf '%s' "$c" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]\+' || true); echo "${v:-0}"; }
  while IFS= read -r f; do
    c=$(tr '\n' ' ' <"$f" | grep -o '<Counters [^>]*>' | head -n 1 || true)
    [ -n "$c" ] || continue
    n=$((n + 1))
    p=$((p + $(attr passed)))
    fl=$((fl + $(attr failed) + $(attr error) + $(attr timeout) + $(attr aborted)))
    # xunit's skipped tests are neither executed nor counted as notExecuted
    local total executed skipped
    total=$(attr total); executed=$(attr executed); skipped=$(attr notExecuted)
    [ $((total - executed)) -gt "$skipped" ] && skipped=$((total - executed))
    s=$((s + skipped))
    t=$((t + total))
  done < <(find "$dir" -name '*.trx' -type f 2>/dev/null)
  echo "$p $fl $s $t $n"
}

# Fallback: sums the VSTest console summary lines
# "Passed!  - Failed:     0, Passed:    12, Skipped:     0, Total:    12, ..." in $1.
sum_console() {
  local p=0 fl=0 s=0 t=0 n=0 line num
  num() { printf '%s' "$line" | grep -o "$1:[[:space:]]*[0-9]\+" | grep -o '[0-9]\+' | head -n 1 || echo 0; }
  while IFS= read -r line; do
    n=$((n + 1))
    p=$((p + $(num Passed))); fl=$((fl + $(num Failed)))
    s=$((s + $(num Skipped))); t=$((t + $(num Total)))
  done < <(grep -E '^(Passed|Failed)! +- +Failed: ' "$1" 2>/dev/null || true)
  echo "$p $fl $s $t $n"
}

summary() {
  local p=$1 f=$2 s=$3
  if [ "$s" -gt 0 ]; then
    echo "$p passed, $f failed, $s skipped"
  else
    echo "$p passed, $f failed"
  fi
}

cmd_test() {
  [ -f "$SOLUTION" ] || { echo "build.sh: error: $SOLUTION not found" >&2; summary 0 1 0; exit 1; }

  trap cleanup_test EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/integrations-test.XXXXXX")
  chmod 755 "$TEST_TMP"   # the postgres OS user must traverse it when we are root

  INTEGRATIONS_TEST_DB=$(INTEGRATIONS_PG_FAST=1 eng/pg.sh start "$TEST_TMP/pg") \
    || { echo "build.sh: error: could not start PostgreSQL for the tests" >&2; summary 0 1 0; exit 1; }
  export INTEGRATIONS_TEST_DB

  if [ -f tests/fixtures/package-lock.json ]; then
    if [ ! -d tests/fixtures/node_modules ] || [ tests/fixtures/package-lock.json -nt tests/fixtures/node_modules ]; then
      echo "Installing npm test fixtures (tests/fixtures)..." >&2
      if ! npm ci --prefix tests/fixtures --no-audit --no-fund >&2; then
        echo "build.sh: error: npm ci in tests/fixtures failed" >&2
        summary 0 1 0
        exit 1
      fi
      touch tests/fixtures/node_modules
    fi
  fi

  echo "Building $SOLUTION (Release)..." >&2
  if ! dotnet build "$SOLUTION" -c Release -nologo -v quiet; then
    echo "build.sh: error: build failed (compiler or analyzer errors above)" >&2
    summary 0 1 0
    exit 1
  fi

  # The style gate: formatting and code style (.editorconfig) of the whole solution; analyzers already fail the build.
  local format_failed=0
  echo "Checking formatting and code style (dotnet format --verify-no-changes)..." >&2
  if ! dotnet format "$SOLUTION" --verify-no-changes --no-restore -v quiet >&2; then
    echo "build.sh: error: formatting or code style differs from .editorconfig: run 'dotnet format $SOLUTION' and commit the result" >&2
    format_failed=1
  fi

  local results="$TEST_TMP/results" rc
  set +e
  dotnet test "$SOLUTION" -c Release --no-build --nologo \
    --results-directory "$results" --logger trx \
    --blame-hang-timeout "${INTEGRATIONS_TEST_HANG_TIMEOUT:-20m}" --blame-hang-dump-type none \
    2>&1 | tee "$TEST_TMP/test.log"
  rc=${PIPESTATUS[0]}
  set -e

  local p f s t n
  read -r p f s t n < <(sum_trx "$results")
  if [ "$n" -eq 0 ]; then
    read -r p f s t n < <(sum_console "$TEST_TMP/test.log")
  fi

  if [ "$n" -eq 0 ] || [ $((p + f)) -eq 0 ]; then
    echo "build.sh: error: no test ran (dotnet test exit code $rc)" >&2
    [ "$f" -gt 0 ] || f=1
    summary "$p" "$f" "$s"
    exit 1
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "build.sh: error: dotnet test failed (exit code $rc) without a failed test: a test host crashed or was aborted" >&2
    f=1
  fi
  f=$((f + format_failed))
  summary "$p" "$f" "$s"
  [ "$f" -eq 0 ] || exit 1
}

# ---------------------------------------------------------------- bench

BENCH_TMP=""
cleanup_bench() {
  local rc=$?
  if [ -n "$BENCH_TMP" ]; then
    eng/pg.sh destroy "$BENCH_TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$BENCH_TMP" 2>/dev/null || true
  fi
  exit "$rc"
}

# Sizes and durations come from BENCH_* variables (see bench/README.md); INTEGRATIONS_PG_FAST=1 turns
# durability off for the bench cluster, and the report says so.
cmd_bench() {
  local smoke=0 stages=${BENCH_STAGES:-all} invocation="./build.sh bench"
  while [ $# -gt 0 ]; do
    case "$1" in
      --smoke) smoke=1; invocation="$invocation --smoke"; shift ;;
      --stages) [ $# -ge 2 ] || usage; stages=$2; invocation="$invocation --stages $2"; shift 2 ;;
      --stages=*) stages=${1#--stages=}; invocation="$invocation $1"; shift ;;
      *) printf 'build.sh: unknown argument for bench: %s\n' "$1" >&2; usage ;;
    esac
  done
  [ "${INTEGRATIONS_PG_FAST:-0}" = 1 ] && invocation="INTEGRATIONS_PG_FAST=1 $invocation"

  trap cleanup_bench EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/integrations-bench.XXXXXX")
  chmod 755 "$BENCH_TMP"   # the postgres OS user must traverse it when we are root

  echo "Building $API_PROJECT and bench/Integrations.Benchmarks (Release)..." >&2
  dotnet build "$API_PROJECT" -c Release -nologo -v quiet -clp:NoSummary
  dotnet build bench/Integrations.Benchmarks -c Release -nologo -v quiet -clp:NoSummary

  local db
  db=$(eng/pg.sh start "$BENCH_TMP/pg") || die "could not start PostgreSQL for the benchmarks"

  local report="$ROOT/bench/README.md" out="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
  if [ "$smoke" = 1 ]; then
    report="$ROOT/bench/results/smoke.md"
  fi
  mkdir -p "$out"
  local runner
  runner=$(ls -t bench/Integrations.Benchmarks/bin/Release/*/Integrations.Benchmarks.dll 2>/dev/null | head -n 1 || true)
  [ -n "$runner" ] || die "built Integrations.Benchmarks.dll not found"

  BENCH_PROFILE=$([ "$smoke" = 1 ] && echo smoke || echo full) \
  BENCH_STAGES=$stages BENCH_DB=$db BENCH_API_DLL=$(api_dll) BENCH_OUT=$out BENCH_REPORT=$report \
  BENCH_COMMAND=$invocation \
  BENCH_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')" \
    dotnet "$runner"
  echo "Raw output (API host logs, BenchmarkDotNet artifacts, report.md): $out" >&2
}

# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  run) cmd_run "$@" ;;
  stop-db) [ $# -eq 0 ] || usage; cmd_stop_db ;;
  test) [ $# -eq 0 ] || usage; cmd_test ;;
  bench) cmd_bench "$@" ;;
  -h|--help|help) usage ;;
  *) printf 'build.sh: unknown command: %s\n' "$command" >&2; usage ;;
esac
