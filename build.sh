#!/usr/bin/env bash
# Integrations: build, run and test.
#
#   ./build.sh run [--urls URL]   run the API locally (Development) against a project-local
#                                 PostgreSQL unless ConnectionStrings__Integrations is set
#   ./build.sh stop-db            stop the project-local PostgreSQL started by `run`
#   ./build.sh psql [ARGS]        psql on the project-local cluster as the tables' owner (starts it if stopped)
#   ./build.sh connection-string  print the connection strings `run` uses, whole (owner, then service)
#   ./build.sh api-key --tenant T [--scopes a,b] [--name N]
#                                 create an API key with the local configuration (prints it once)
#   ./build.sh demo-db            create (or reset) the demo database `shop` and its read-only role `shop_reader`
#                                 in the local cluster; prints SHOP_PORT=... and SHOP_PASSWORD=... for eval
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
#   INTEGRATIONS_DATA_DIR             where run, psql, api-key and demo-db keep their state (default .data)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
DATA=${INTEGRATIONS_DATA_DIR:-$ROOT/.data}
API_PROJECT="src/Integrations.Api"
SOLUTION="Integrations.sln"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# English tool output: the test summary fallback parses VSTest's console lines
export DOTNET_CLI_UI_LANGUAGE=en VSLANG=1033

usage() {
  cat >&2 <<'EOF'
usage: ./build.sh <command>
  run [--urls URL] [--demo]
                     build and run the API (Development) with a local PostgreSQL,
                     a development master key and a development API key (kept in .data/);
                     --demo also creates the demo database `shop` (see demo-db)
  stop-db            stop the local PostgreSQL started by `run`
  psql [ARGS]        psql on the local cluster as the tables' owner
  connection-string  print the local connection strings whole (owner, then service)
  api-key --tenant T [--scopes a,b] [--name N]
                     create an API key with the local configuration
  demo-db            create the demo database `shop` (orders) with a read-only role
  test               run all tests against a throwaway PostgreSQL
  bench [--smoke] [--stages pipeline,startup,query,audit,tools-invoke,telemetry,mcp-gateway,llm-gateway]
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

# The local configuration every command that talks to the service's database shares: the project-local
# cluster (unless ConnectionStrings__Integrations is set), the anchor file and the development master key.
# Sets LOCAL_DB=1 when the local cluster is used.
LOCAL_DB=0
local_environment() {
  mkdir -p "$DATA"
  chmod 711 "$DATA"   # traversable (not listable): the postgres OS user reaches .data/postgres
  export ASPNETCORE_ENVIRONMENT=Development DOTNET_ENVIRONMENT=Development
  if [ -z "${ConnectionStrings__Integrations:-}" ]; then
    ConnectionStrings__IntegrationsOwner=$(eng/pg.sh start "$DATA/postgres")
    ConnectionStrings__Integrations=$(eng/pg.sh service "$DATA/postgres")
    export ConnectionStrings__Integrations ConnectionStrings__IntegrationsOwner
    LOCAL_DB=1
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
}

masked() { printf '%s\n' "$1" | sed -E 's/(Password=)[^;]*/\1***/I'; }

# Value of key $2 (case-insensitive) in the Npgsql connection string $1.
conn_value() { printf '%s\n' "$1" | tr ';' '\n' | sed -n -E "s/^[[:space:]]*$2[[:space:]]*=(.*)$/\1/Ip" | head -n 1; }

build_api() {
  echo "Building $API_PROJECT (Release)..." >&2
  dotnet build "$API_PROJECT" -c Release -nologo -v quiet -clp:NoSummary
}

cmd_run() {
  local url="" demo=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --urls) [ $# -ge 2 ] || usage; url=$2; shift 2 ;;
      --urls=*) url=${1#--urls=}; shift ;;
      --demo) demo=1; shift ;;
      *) printf 'build.sh: unknown argument for run: %s\n' "$1" >&2; usage ;;
    esac
  done
  [ -n "$url" ] || url=${INTEGRATIONS_URLS:-http://127.0.0.1:8080}
  url=${url%/}

  local_environment
  local local_db=$LOCAL_DB
  build_api
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

  local demo_line=""
  if [ "$demo" = 1 ]; then
    [ "$local_db" = 1 ] || die "--demo needs the project-local PostgreSQL (ConnectionStrings__Integrations is set)"
    demo_line=$(make_demo_db | tr '\n' ' ' | sed 's/ $//')
  fi

  echo "API: $url"
  echo "OpenAPI: $url/openapi/v1.json"
  echo "Swagger UI: $url/docs"
  echo "MCP endpoint (Streamable HTTP, header Authorization: Bearer <key>): $url/mcp"
  echo "Console: $url/console (sign in with the API key below)"
  echo "API key: $key"
  echo "Database: $(masked "$ConnectionStrings__Integrations")"
  if [ "$local_db" = 1 ]; then
    echo "  whole: ./build.sh connection-string; a shell on it: ./build.sh psql"
    echo "PostgreSQL (.data/postgres) keeps running after the API stops; stop it with: ./build.sh stop-db"
  fi
  [ -z "$demo_line" ] || echo "Demo database shop (read-only role shop_reader): export $demo_line"
  echo "For the README's examples: export BASE=$url KEY=$key"
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

cmd_connection_string() {
  [ -z "${ConnectionStrings__Integrations:-}" ] || die "ConnectionStrings__Integrations is set: the service uses that, not the local cluster"
  local_environment
  printf '%s\n' "$ConnectionStrings__IntegrationsOwner" "$ConnectionStrings__Integrations"
}

find_psql() {
  command -v psql 2>/dev/null && return 0
  ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1 | grep . || die "psql not found (install postgresql-client)"
}

cmd_psql() {
  [ -z "${ConnectionStrings__Integrations:-}" ] || die "ConnectionStrings__Integrations is set: connect to that database with your own psql"
  local_environment
  local cs=$ConnectionStrings__IntegrationsOwner psql
  psql=$(find_psql)
  PGPASSWORD=$(conn_value "$cs" Password) exec "$psql" -h "$(conn_value "$cs" Host)" -p "$(conn_value "$cs" Port)" \
    -U "$(conn_value "$cs" Username)" -d "${PSQL_DATABASE:-$(conn_value "$cs" Database)}" "$@"
}

cmd_api_key() {
  local tenant="" scopes="integrations:read,integrations:write,tools:invoke" name=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --tenant) [ $# -ge 2 ] || usage; tenant=$2; shift 2 ;;
      --scopes) [ $# -ge 2 ] || usage; scopes=$2; shift 2 ;;
      --name) [ $# -ge 2 ] || usage; name=$2; shift 2 ;;
      *) printf 'build.sh: unknown argument for api-key: %s\n' "$1" >&2; usage ;;
    esac
  done
  [ -n "$tenant" ] || die "api-key needs --tenant <tenant>"
  local_environment
  # The host command is stable: an existing build is used as it is (run builds afresh).
  ls "$API_PROJECT"/bin/Release/*/Integrations.Api.dll >/dev/null 2>&1 || build_api
  local args=(create-api-key --tenant "$tenant" --scopes "$scopes")
  [ -z "$name" ] || args+=(--name "$name")
  dotnet "$(api_dll)" migrate >&2
  dotnet "$(api_dll)" "${args[@]}"
}

# The README's datasource example needs a database to read: `shop` with customers' orders, and a role that may
# only read them (the gateway's rules are the second wall; the role's privileges the first).
cmd_demo_db() {
  [ -z "${ConnectionStrings__Integrations:-}" ] || die "demo-db creates the database in the project-local cluster; ConnectionStrings__Integrations is set"
  local_environment
  make_demo_db
}

make_demo_db() {
  local cs=$ConnectionStrings__IntegrationsOwner psql password
  psql=$(find_psql)
  if [ ! -s "$DATA/shop-reader-password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$DATA/shop-reader-password")
  fi
  password=$(tr -d '\n' <"$DATA/shop-reader-password")
  local -a conn=(-h "$(conn_value "$cs" Host)" -p "$(conn_value "$cs" Port)" -U "$(conn_value "$cs" Username)" -v ON_ERROR_STOP=1 -q)
  export PGPASSWORD
  PGPASSWORD=$(conn_value "$cs" Password)
  if ! "$psql" "${conn[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
    "$psql" "${conn[@]}" -d postgres -c "CREATE DATABASE shop" >/dev/null
  fi
  PGOPTIONS='-c client_min_messages=warning' "$psql" "${conn[@]}" -d postgres -v pw="$password" >/dev/null <<'SQL'
SELECT format('CREATE ROLE shop_reader LOGIN PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_reader') \gexec
SELECT format('ALTER ROLE shop_reader LOGIN PASSWORD %L', :'pw') \gexec
REVOKE ALL ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO shop_reader;
SQL
  PGOPTIONS='-c client_min_messages=warning' "$psql" "${conn[@]}" -d shop -f eng/demo-shop.sql >/dev/null
  echo "SHOP_PORT=$(conn_value "$cs" Port)"
  echo "SHOP_PASSWORD=$password"
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

# Prints what xUnit reported outside any test (a class fixture that failed to dispose, say) from the TRX files in $1:
# the console's minimal verbosity shows such an error's exception type only; its message and stack trace are kept in
# the TRX's run output.
run_errors() {
  find "$1" -name '*.trx' -type f -exec grep -h '^\[xUnit\.net [0-9:.]*\]  ' {} + 2>/dev/null \
    | grep -Ev '^\[xUnit\.net [0-9:.]*\]   (Discovering|Discovered|Starting|Finished): ' \
    | sed -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' -e 's/&amp;/\&/g' >&2 || true
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

# The console's end-to-end tests drive Debian's Chromium through Playwright (a browser download is not possible here).
install_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  echo "Chromium not found: installing the distribution's chromium package (console end-to-end tests)" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "chromium is not installed and this is not root (install the 'chromium' package)"
    sudo=(sudo -n)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 chromium </dev/null >&2
  [ -x /usr/bin/chromium ] || die "chromium was installed but /usr/bin/chromium is missing"
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

  install_chromium || { echo "build.sh: error: could not install chromium for the console tests" >&2; summary 0 1 0; exit 1; }

  if [ -f tests/fixtures/package-lock.json ]; then
    # The marker is written only when npm ci finished: an interrupted install is done again.
    local marker=tests/fixtures/node_modules/.installed-from-lock
    if [ ! -f "$marker" ] || [ tests/fixtures/package-lock.json -nt "$marker" ]; then
      echo "Installing npm test fixtures (tests/fixtures)..." >&2
      if ! npm ci --prefix tests/fixtures --no-audit --no-fund >&2; then
        echo "build.sh: error: npm ci in tests/fixtures failed" >&2
        summary 0 1 0
        exit 1
      fi
      touch "$marker"
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
    echo "build.sh: error: dotnet test failed (exit code $rc) without a failed test: a test host crashed or was aborted, or an error outside any test:" >&2
    run_errors "$results"
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
# The peer gateways of the mcp-gateway and llm-gateway stages (bench/peers: mcp-hub, Portkey), pinned by their lock file.
# --ignore-scripts: Portkey's postinstall runs patch-package, which is not installed with it; the built server needs no patch.
install_bench_peers() {
  local marker=bench/peers/node_modules/.installed-from-lock
  if [ ! -f "$marker" ] || [ bench/peers/package-lock.json -nt "$marker" ]; then
    echo "Installing the benchmark's peer gateways (bench/peers)..." >&2
    npm ci --prefix bench/peers --ignore-scripts --no-audit --no-fund >&2 || die "npm ci in bench/peers failed"
    touch "$marker"
  fi
}

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

  case ",$stages," in
    *,all,*|*,mcp-gateway,*|*,llm-gateway,*) install_bench_peers ;;
  esac

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
  BENCH_COMMAND=$invocation BENCH_PEERS="$ROOT/bench/peers/node_modules" \
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
  psql) cmd_psql "$@" ;;
  connection-string) [ $# -eq 0 ] || usage; cmd_connection_string ;;
  api-key) cmd_api_key "$@" ;;
  demo-db) [ $# -eq 0 ] || usage; cmd_demo_db ;;
  test) [ $# -eq 0 ] || usage; cmd_test ;;
  bench) cmd_bench "$@" ;;
  -h|--help|help) usage ;;
  *) printf 'build.sh: unknown command: %s\n' "$command" >&2; usage ;;
esac
