#!/bin/sh
# new-repo.sh makes a throwaway Go repository for the code-change
# quickstart: one commit on main (calc.go with Add and its test), made with
# a fixed identity and date, so its commit id is the base_ref in input.json.
#
#   eval "$(examples/code-change-demo/new-repo.sh)"      # a new temporary directory
#   eval "$(examples/code-change-demo/new-repo.sh DIR)"  # DIR, which must not exist
#
# It prints the shell lines that export what code-change.tools.yaml reads:
# CODE_CHANGE_REPO (the repository), GOCACHE and GOROOT (bound into the
# sandbox), and a comment with the base commit.
set -eu

if [ $# -gt 1 ]; then
	echo "usage: $0 [DIR]" >&2
	exit 2
fi
if [ $# -eq 1 ]; then
	repo=$1
	if [ -e "$repo" ]; then
		echo "$0: $repo exists; name a directory to create" >&2
		exit 2
	fi
	mkdir -p "$repo"
else
	repo=$(mktemp -d "${TMPDIR:-/tmp}/code-change-demo.XXXXXX")
fi
repo=$(cd "$repo" && pwd -P)

cat >"$repo/go.mod" <<'GO'
module example.com/calc

go 1.21
GO
cat >"$repo/calc.go" <<'GO'
package calc

func Add(a, b int) int { return a + b }
GO
cat >"$repo/calc_test.go" <<'GO'
package calc

import "testing"

func TestAdd(t *testing.T) {
	if Add(2, 3) != 5 {
		t.Fatal("Add(2, 3) != 5")
	}
}
GO

# No user or system configuration, a fixed identity and date: the same
# commit id everywhere.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com GIT_AUTHOR_DATE="2026-01-01T00:00:00Z"
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git -C "$repo" init -q -b main
git -C "$repo" add go.mod calc.go calc_test.go
git -C "$repo" commit -q -m "calc: Add"
base=$(git -C "$repo" rev-parse HEAD)

echo "export CODE_CHANGE_REPO='$repo'"
mkdir -p "$(go env GOCACHE)"
echo "export GOCACHE='$(go env GOCACHE)' GOROOT='$(go env GOROOT)'"
echo "# base_ref (main): $base"
