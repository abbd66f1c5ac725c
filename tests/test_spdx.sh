#!/bin/sh
# SPDX-License-Identifier: MIT
# test_spdx.sh - every source file carries the licence line (issue 16, item 1).
# Source files: *.c *.h *.sh *.py, Makefile, and any other file whose first
# line is a shebang (#!). Data (tests/bad/, fuzz/seeds/, fuzz/regress/,
# tests/repro/, *.xyz, models/, ...) is not source and is not checked.
# The line `SPDX-License-Identifier: MIT` must be within a file's first 5
# lines (after a shebang, in the file's comment syntax). LICENSE must exist
# and be the MIT licence.
# Files: `git ls-files` (tracked and untracked-but-not-ignored) when run in a
# git checkout, else every file under the current folder (build* skipped).
# Run from the repository root.
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_spdx: $1"; }

if [ -f LICENSE ] && grep -q '^MIT License' LICENSE && grep -q 'Copyright (c) 2026 the tensorial authors' LICENSE; then
    ok
else
    bad "LICENSE missing or not the MIT licence with 'Copyright (c) 2026 the tensorial authors'"
fi

list=$(mktemp) || exit 1
trap 'rm -f "$list"' EXIT
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard > "$list"
else
    find . -type f ! -path './build*' ! -path './.git/*' | sed 's|^\./||' > "$list"
fi

nfiles=0; missing=0
while IFS= read -r f; do
    [ -f "$f" ] || continue
    case "$f" in
        tests/bad/*|fuzz/seeds/*|fuzz/regress/*|tests/repro/*|models/*|*.xyz) continue ;;
    esac
    case "$f" in
        *.c|*.h|*.sh|*.py|Makefile|*/Makefile) ;;
        *) head -c 2 "$f" 2>/dev/null | grep -q '^#!' || continue ;;
    esac
    nfiles=$((nfiles + 1))
    if head -n 5 "$f" | grep -q 'SPDX-License-Identifier: MIT'; then
        :
    else
        missing=$((missing + 1))
        [ "$missing" -le 20 ] && echo "  no SPDX line in the first 5 lines: $f"
    fi
done < "$list"
[ "$missing" -gt 20 ] && echo "  ... and $((missing - 20)) more"

if [ "$nfiles" -gt 0 ]; then ok; else bad "no source files found (run from the repository root)"; fi
if [ "$missing" -eq 0 ]; then ok; else bad "$missing of $nfiles source files lack 'SPDX-License-Identifier: MIT'"; fi
echo "test_spdx: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
