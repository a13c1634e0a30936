#!/usr/bin/env bash
# Checks the deployment files without installing or running anything (docs/deploy.md):
#   1. packaging/systemd/contextd.service with `systemd-analyze verify` (and its sandboxing
#      with `systemd-analyze security --offline`, where that exists), on a copy whose ExecStart
#      names the binary given as $1, since /usr/local/bin/contextd need not exist here;
#   2. the Dockerfile, parsed with the PyPI package dockerfile-parse (no Docker daemon needed):
#      two or more stages, a non-root USER in the last one, a HEALTHCHECK, an EXPOSE, no ADD of a
#      remote URL.
#
#   bash packaging/check.sh [BINARY]     # BINARY: default target/debug/contextd
#
# Exit status 0 when everything passes; 1 with a line saying what failed otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
unit="$root/packaging/systemd/contextd.service"
dockerfile="$root/Dockerfile"
dockerignore="$root/.dockerignore"

fail() {
  echo "check.sh: FAIL: $*" >&2
  exit 1
}

# --- 1. the systemd unit -----------------------------------------------------------------------

# The binary: $1 (relative to the current directory), or the debug build of this work tree.
binary=${1:-$root/target/debug/contextd}
case $binary in
  /*) ;;
  *) binary="$PWD/$binary" ;;
esac
[ -f "$binary" ] && [ -x "$binary" ] ||
  fail "$binary is not an executable file (build it first: cargo build -p contextd)"
[ -f "$unit" ] || fail "$unit is missing"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
  fi
  command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze is not installed"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
copy="$tmp/contextd.service"
# The binary path as a sed replacement: escape \, & and the delimiter |.
replacement=$(printf '%s' "$binary" | sed 's/[\\&|]/\\&/g')
sed "s|^\(ExecStart=[-@:+!]*\)/usr/local/bin/contextd\([[:space:]]\)|\1$replacement\2|" "$unit" >"$copy"
grep -qxF "ExecStart=$binary serve" "$copy" ||
  fail "could not point ExecStart at $binary (expected 'ExecStart=/usr/local/bin/contextd serve' in $unit)"

verify_flags=(--man=no)
# systemd 250+: errors of other units (dependencies, the host's own units) don't set the exit
# status; only this unit's do.
verify_help=$(systemd-analyze verify --help 2>&1 || true)
if grep -q -- '--recursive-errors' <<<"$verify_help"; then
  verify_flags+=(--recursive-errors=no)
fi
set +e
output=$(cd "$tmp" && systemd-analyze verify "${verify_flags[@]}" "$copy" 2>&1)
status=$?
set -e
# Lines about the host's other units are not ours; any line naming this unit is.
ours=$(printf '%s\n' "$output" | grep -F 'contextd.service' || true)
if [ -n "$ours" ]; then
  printf '%s\n' "$ours" >&2
  fail "systemd-analyze verify reported problems in contextd.service"
fi
[ "$status" = 0 ] || {
  printf '%s\n' "$output" >&2
  fail "systemd-analyze verify exited with status $status"
}
version=$(systemd-analyze --version 2>/dev/null || true)
version=${version%%$'\n'*}
echo "ok   systemd unit: systemd-analyze verify (${version%% (*}), ExecStart=$binary serve"

# The sandboxing must not quietly erode: the exposure score (0 best, 10 worst) stays at 2.5 or
# below (1.2 when written). --offline needs systemd 250+; older ones skip this.
if grep -q -- '--offline' <<<"$verify_help"; then
  set +e
  security=$(cd "$tmp" && systemd-analyze security --offline=true --threshold=25 --no-pager "$copy" 2>&1)
  status=$?
  set -e
  exposure=$(printf '%s\n' "$security" | grep -o 'Overall exposure level for contextd.service: [0-9.]* [A-Z]*' || true)
  if [ "$status" != 0 ] || [ -z "$exposure" ]; then
    printf '%s\n' "$security" >&2
    fail "systemd-analyze security: exposure above 2.5, or no score (${exposure:-none})"
  fi
  echo "ok   systemd unit: ${exposure#Overall } (at most 2.5 allowed)"
else
  echo "skip systemd unit: this systemd-analyze has no 'security --offline'"
fi

# --- 2. the Dockerfile -------------------------------------------------------------------------

[ -f "$dockerfile" ] || fail "$dockerfile is missing"
if ! python3 -c "import dockerfile_parse" >/dev/null 2>&1; then
  python3 -m pip install --quiet dockerfile-parse ||
    python3 -m pip install --quiet --break-system-packages dockerfile-parse
fi

python3 - "$dockerfile" "$dockerignore" <<'PY'
import json
import re
import shlex
import sys

from dockerfile_parse import DockerfileParser

path, ignore_path = sys.argv[1], sys.argv[2]
parser = DockerfileParser(path=path, env_replace=False)
instructions = parser.structure
problems = []


def ok(what):
    print(f"ok   Dockerfile: {what}")


# Stages: each FROM starts one; the last one is the image that runs.
starts = [i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM"]
if len(starts) < 2:
    problems.append(f"{len(starts)} FROM stage(s); a multi-stage build (2 or more) is expected")
else:
    ok(f"{len(starts)} stages: " + ", ".join(instructions[i]["value"] for i in starts))
last = instructions[starts[-1]:] if starts else instructions

# The last stage's user: its last USER instruction, never root (the default when there is none).
users = [ins["value"].strip() for ins in last if ins["instruction"] == "USER"]
if not users:
    problems.append("the last stage has no USER: it would run as root")
else:
    user = users[-1]
    name = user.split(":", 1)[0]
    if name in ("root", "0", ""):
        problems.append(f"the last stage runs as USER {user}")
    else:
        ok(f"last stage runs as USER {user} (not root)")

# A health check in the last stage, in exec form parseable as JSON (so its quoting is right).
checks = [ins["value"].strip() for ins in last if ins["instruction"] == "HEALTHCHECK"]
if not checks:
    problems.append("the last stage has no HEALTHCHECK")
else:
    check = checks[-1]
    if check.upper() == "NONE":
        problems.append("HEALTHCHECK NONE turns the health check off")
    else:
        match = re.search(r"\bCMD\s+(.*)$", check, re.S)
        command = match.group(1).strip() if match else ""
        if command.startswith("["):
            try:
                argv = json.loads(command)
            except json.JSONDecodeError as e:
                problems.append(f"HEALTHCHECK CMD is not a valid JSON array: {e}")
            else:
                ok(f"HEALTHCHECK CMD {argv[:2]}… (exec form, valid JSON)")
        elif command:
            ok(f"HEALTHCHECK CMD {command[:60]}… (shell form)")
        else:
            problems.append(f"HEALTHCHECK without CMD: {check!r}")

exposes = [ins["value"].strip() for ins in last if ins["instruction"] == "EXPOSE"]
if not exposes:
    problems.append("the last stage has no EXPOSE")
else:
    ok("EXPOSE " + " ".join(exposes))

# ADD of a remote source (URL or git) anywhere: unpinned content at build time. COPY instead.
remote = re.compile(r"^(https?|ftp|git)://|^git@|\.git(#.*)?$", re.I)
adds = [ins for ins in instructions if ins["instruction"] == "ADD"]
for ins in adds:
    # Flags first (--chown=…, --chmod=…), then sources and destination, in JSON or shell form.
    value = re.sub(r"^(\s*--\S+)+\s*", "", ins["value"].strip())
    try:
        args = json.loads(value) if value.startswith("[") else shlex.split(value)
    except ValueError:
        args = value.split()
    sources = args[:-1]
    for source in sources:
        if remote.search(source):
            problems.append(f"line {ins['startline'] + 1}: ADD of a remote source {source}")
if not any("ADD of a remote" in p for p in problems):
    ok(f"no ADD of a remote URL ({len(adds)} ADD instruction(s) in all)")

# The build context: what must never be sent to the daemon.
try:
    with open(ignore_path) as f:
        ignored = {line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")}
except FileNotFoundError:
    problems.append(".dockerignore is missing (target/ and .git/ would be sent to the daemon)")
else:
    missing = [p for p in ("target", ".git") if p not in ignored]
    if missing:
        problems.append(".dockerignore does not exclude " + ", ".join(missing))
    else:
        ok(".dockerignore excludes target/ and .git/")

if problems:
    for p in problems:
        print(f"check.sh: FAIL: Dockerfile: {p}", file=sys.stderr)
    sys.exit(1)
PY

echo "check.sh: all checks passed"
