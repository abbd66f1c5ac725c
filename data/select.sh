#!/bin/sh
# SPDX-License-Identifier: MIT
# select.sh [--has KEY2]... KEY VALUE FILE... - writes to stdout the frames of
# extended-XYZ files whose comment line sets KEY=VALUE (or KEY="VALUE") and, for
# each --has KEY2, has the key KEY2 (any value), in file order.
# For the chunk files that mix splits, e.g.
#     sh data/select.sh split train data/nma_tdm/chunk_*.xyz > tdm_train.xyz
#     sh data/select.sh split test  data/nma_tdm/chunk_*.xyz > tdm_test.xyz
# and for the transition dipoles, whose frames carry only the keys of the states
# that were identified (a frame with an ambiguous pi->pi* state has no tdm_pipi):
#     sh data/select.sh --has tdm_pipi split train data/nma_tdm/chunk_*.xyz
# KEY, KEY2 and VALUE: letters, digits, '_', '.', '-' only. A count line that is not
# a number, or a frame cut short, stops the script with FILE:LINE on stderr
# (exit 1).
# Frames are copied unchanged (the programs read them as they are); nothing is
# written unless every input is well formed.
has=""
while [ "$1" = "--has" ]; do
    [ $# -ge 2 ] || break
    has="$has $2"
    shift 2
done
if [ $# -lt 3 ]; then
    echo "usage: sh data/select.sh [--has KEY2]... KEY VALUE FILE..." >&2
    exit 2
fi
key=$1 value=$2
shift 2
case "$key$value$(printf %s "$has" | tr -d ' ')" in
    *[!A-Za-z0-9_.-]*) echo "select.sh: KEY and VALUE may hold only letters, digits, _ . -" >&2; exit 2 ;;
esac
for f in "$@"; do
    [ -r "$f" ] || { echo "select.sh: cannot read $f" >&2; exit 1; }
done
exec awk -v key="$key" -v value="$value" -v has="$has" '
    function truncated() {
        printf "%s:%d: frame ends early (%d atom lines missing)\n", prev, cline, left - (left == count + 1) > "/dev/stderr"
        bad = 1
        exit 1
    }
    FNR == 1 { if (left > 0) truncated(); left = 0; prev = FILENAME }
    left == 0 {
        if ($0 !~ /^[ \t]*[0-9]+[ \t]*$/) {
            if ($0 ~ /^[ \t]*$/) next  # trailing blank lines
            printf "%s:%d: expected an atom count, found \"%s\"\n", FILENAME, FNR, $0 > "/dev/stderr"
            bad = 1
            exit 1
        }
        count = $1 + 0
        left = count + 1
        cline = FNR
        header = $0
        next
    }
    left == count + 1 {
        pad = " " $0 " "
        keep = index(pad, " " key "=" value " ") || index(pad, " " key "=\"" value "\" ")
        nh = split(has, H, " ")
        for (h = 1; h <= nh && keep; h++) keep = index(pad, " " H[h] "=") > 0
        if (keep) { out[++n] = header; out[++n] = $0 }
        left--
        next
    }
    { if (keep) out[++n] = $0; left-- }
    END {
        if (bad) exit 1
        if (left > 0) truncated()
        for (i = 1; i <= n; i++) print out[i]  # only once every input was read without error
    }
' "$@"
