#!/usr/bin/env bash
# The suite's Mermaid renderer (tests/unit/test_mermaid_render.py): Debian's chromium, node and
# npm when absent, and @mermaid-js/mermaid-cli as pinned by .tools/package-lock.json, installed
# into .tools/node_modules (gitignored). Run by `scripts/setup.sh --test-tools` (make test,
# make test-unit); `make run` needs none of it. Puppeteer's own browser download is skipped:
# mmdc drives Debian's chromium (.tools/puppeteer.json).
# Outside CI a failure here is a warning and the render test skips, saying why; in CI ($CI set)
# it fails the run, so CI never passes without rendering the diagrams.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
STAMP="$TOOLS/node_modules/.clawpolicy-setup"

fail() {
  echo "setup: $*" >&2
  case "$(echo "${CI-}" | tr '[:upper:]' '[:lower:]')" in
    "" | 0 | false | no) echo "setup: the Mermaid render test will be skipped" >&2; exit 0 ;;
    *) exit 1 ;;
  esac
}

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
if ((${#need[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || fail "need root (or sudo) to install ${need[*]}"
    SUDO=sudo
  fi
  echo "setup: installing Debian packages for the diagram test: ${need[*]}"
  { $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  } || fail "could not install ${need[*]}"
fi

want="$(sha256sum "$TOOLS/package-lock.json" | cut -d' ' -f1)"
if [[ -x "$TOOLS/node_modules/.bin/mmdc" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
echo "setup: installing mermaid-cli into $TOOLS/node_modules (npm ci, pinned by package-lock.json)"
PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix "$TOOLS" --no-audit --no-fund --loglevel=error >/dev/null ||
  fail "npm ci in $TOOLS failed"
echo "$want" > "$STAMP"
