#!/usr/bin/env bash
# Make a headless Chromium available for the report test (tests/test_report.py): print the browser's path on stdout.
# Installs Debian's `chromium` package with apt-get when no browser is on the PATH (playwright's own browser
# download needs the internet; Debian's package comes from the package mirror).
#
#   tests/browser/ensure_chromium.sh        # path of chromium, installing it first if need be
#
# Exit status: 0 with the path on stdout; 77 when this machine cannot get a browser at all (not root, no apt-get,
# package not installable), so a caller may skip; 1 for any other failure. Either way the last line on stderr says why.
set -euo pipefail

LOG=${SELFDISTILL_BROWSER_LOG:-/tmp/selfdistill-chromium-apt.log}

skip() {
	echo "ensure_chromium.sh: no headless browser here: $*" >&2
	exit 77
}
fail() {
	echo "ensure_chromium.sh: $*" >&2
	exit 1
}

find_browser() {
	local name
	for name in chromium chromium-browser google-chrome google-chrome-stable; do
		if command -v "$name" >/dev/null; then
			command -v "$name"
			return 0
		fi
	done
	return 1
}

# The test suite runs in two processes that may install the browser and SLURM at the same time: apt and dpkg take
# one at a time, so each apt-get waits for this lock instead of failing on dpkg's.
APT_LOCK=/tmp/selfdistill-apt.lock

if ! browser=$(find_browser); then
	[[ $(id -u) -eq 0 ]] || skip "chromium is not installed and installing it needs root"
	command -v apt-get >/dev/null || skip "chromium is not installed and there is no apt-get to install it"
	echo "ensure_chromium.sh: installing chromium (log: $LOG)" >&2
	if ! { DEBIAN_FRONTEND=noninteractive flock -w 900 "$APT_LOCK" apt-get update >"$LOG" 2>&1 &&
		DEBIAN_FRONTEND=noninteractive flock -w 900 "$APT_LOCK" apt-get install -y --no-install-recommends chromium >>"$LOG" 2>&1; }; then
		skip "apt-get could not install chromium (see $LOG)"
	fi
	browser=$(find_browser) || fail "chromium was installed but is not on the PATH"
fi
# a browser that cannot even start (missing libraries) is a failure, not a skip
"$browser" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 ||
	"$browser" --version >/dev/null 2>&1 || fail "$browser does not start"
echo "$browser"
