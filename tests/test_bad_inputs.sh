#!/bin/sh
# SPDX-License-Identifier: MIT
# test_bad_inputs.sh - every program refuses every file of the bad-input
# corpus (tests/bad/, documented in tests/bad/README.md) the way HACKING.md
# promises: a non-zero exit (not a crash), exactly ONE line on stderr that
# names the file and the line ("tests/bad/FILE:LINE: ..." with the line and
# message text of the README's table), nothing on stdout, and no output file
# (nor a temporary *.tmp.* file) left behind.
#
#   xyz_*.xyz, phys_*.xyz, cli_*.xyz  given as the structure file to kqeq soap, qeq,
#                          predict, eval, train (kqeq and qeq), curve (as
#                          --train), eann predict, check, eval, train
#   eann_*.txt             given as -m MODEL to eann predict, check, eval,
#                          and to kqeq predict (the wrong kind of model)
#   kqeq_*.model           given as -m MODEL to kqeq predict, eval, and to
#                          eann predict
# Each command is first run on a good input (tests/repro/) and must succeed,
# so that a mistyped command line cannot pass as a refusal.
#
# Usage: B=build sh tests/test_bad_inputs.sh   (from the repository root)
# Prints FAIL lines, SKIP lines for subcommands that do not exist, and
# "test_bad_inputs: N passed, N failed[, N skipped]"; exits non-zero on failure.
B=${B:-build}
KQEQ=$B/kqeq
EANN=$B/eann
R=tests/repro
BAD=tests/bad
pass=0; fail=0; skip=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
out=$tmp/out          # the programs' output folder: must stay empty on failure
mkdir -p "$out"

note_fail() { fail=$((fail + 1)); echo "FAIL: $*"; }

# have PROG SUBCOMMAND: 0 if the program exists and knows the subcommand.
have() {
    [ -x "$1" ] && "$1" "$2" --help > /dev/null 2>&1 < /dev/null
}

# run_cmd: runs "$@" with stdout/stderr captured; sets rc.
run_cmd() {
    "$@" > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null
    rc=$?
}
# run_refused: the same for a run that must fail. Under `make sanitize` the
# leak check is off for these runs only: a refusal ends in exit(1) right
# after its message, and blocks still allocated then are not leaks (the
# control runs, tests/test_repro.sh and the test programs keep it on).
run_refused() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$@" \
        > "$tmp/stdout" 2> "$tmp/stderr" < /dev/null
    rc=$?
}

# leftovers: prints files left in $out and *.tmp.* files beside the inputs.
leftovers() {
    ls -A "$out"
    find "$BAD" "$R" -name '*.tmp.*' 2> /dev/null
}

# expect_ok LABEL CMD...: a control run on good input must succeed.
expect_ok() {
    label=$1; shift
    run_cmd "$@"
    if [ "$rc" -eq 0 ]; then pass=$((pass + 1))
    else note_fail "$label: control run on good input exited $rc: $(head -n 1 "$tmp/stderr")"; fi
    rm -rf "$out"; mkdir -p "$out"
}

# expect_refusal FILE LINE TEXT CMD...: the checks of the header. TEXT may be
# empty (then only "FILE:LINE: " is checked).
expect_refusal() {
    file=$1; line=$2; text=$3; shift 3
    run_refused "$@"
    what="$* ->"
    ok=1
    if [ "$rc" -eq 0 ]; then note_fail "$what exit status 0 (input accepted)"; ok=0
    elif [ "$rc" -gt 125 ]; then note_fail "$what killed / crashed (status $rc)"; ok=0; fi
    nl=$(wc -l < "$tmp/stderr")
    nc=$(wc -c < "$tmp/stderr")
    if [ "$nl" -ne 1 ] || [ "$(tail -c 1 "$tmp/stderr" | od -An -c | tr -d ' ')" != '\n' ]; then
        note_fail "$what $nl stderr lines ($nc bytes), expected exactly one:"
        sed -n '1,5s/^/    /p' "$tmp/stderr"; ok=0
    else
        msg=$(cat "$tmp/stderr")
        case "$msg" in
        *"$file:$line: "*) ;;
        *) note_fail "$what message does not name $file:$line: $msg"; ok=0 ;;
        esac
        if [ -n "$text" ]; then
            case "$msg" in
            *"$text"*) ;;
            *) note_fail "$what message lacks '$text': $msg"; ok=0 ;;
            esac
        fi
    fi
    if [ -s "$tmp/stdout" ]; then
        note_fail "$what printed on stdout: $(head -c 200 "$tmp/stdout")"; ok=0
    fi
    left=$(leftovers)
    if [ -n "$left" ]; then note_fail "$what left files behind: $left"; ok=0; fi
    [ "$ok" -eq 1 ] && pass=$((pass + 1))
    rm -rf "$out"; mkdir -p "$out"
    find "$BAD" "$R" -name '*.tmp.*' -exec rm -f {} + 2> /dev/null
}

GOOD=$R/water_labelled.xyz
# ---------------------------------------------------------------------------
# Commands taking a structure file: "PROG SUBCOMMAND ARGS..." with @F for the
# file and @O for the output folder.
STRUCT_CMDS="kqeq soap --rcut 3 --nmax 1 --lmax 0 --species H,O @F
kqeq qeq @F
kqeq predict -m $R/kqeq_small.model @F -o @O/out.xyz
kqeq eval -m $R/kqeq_small.model @F --dipole-key dip
kqeq train --train @F --dipole-key dip --soap rcut=3,nmax=1,lmax=0 --species H,O --quiet -o @O/out.model
kqeq train --model qeq --train @F --dipole-key dip --species H,O --quiet -o @O/out.model
kqeq curve --train @F --valid $GOOD --test $GOOD --dipole-key dip --sizes 1 --draws 1 --soap rcut=3,nmax=1,lmax=0 --species H,O -o @O/curve.svg
eann predict -m $R/eann_tiny.txt @F -o @O/out.xyz
eann check -m $R/eann_tiny.txt @F --trials 1
eann eval -m $R/eann_tiny.txt @F --key dip
eann train --train @F --valid @F --target dipole --key dip --species O,H --nwave 2 --nipsin 2 --hidden 3 --epochs 1 --quiet -o @O/out.model"

# Commands taking a model file (@M), on the good structure file.
EANN_MODEL_CMDS="eann predict -m @M $GOOD -o @O/out.xyz
eann check -m @M $GOOD --trials 1
eann eval -m @M $GOOD --key dip
eann train --init @M --train $GOOD --target dipole --key dip --epochs 1 --quiet -o @O/out.model"
KQEQ_MODEL_CMDS="kqeq predict -m @M $GOOD -o @O/out.xyz
kqeq eval -m @M $GOOD --dipole-key dip"

# run_table CMDS SUBST GOODFILE ROWS: for every command line of CMDS (skipped
# with a SKIP line if its subcommand does not exist) a control run with
# GOODFILE, then every row "file|line|text" of ROWS (a file) through it.
run_table() {
    cmds=$1; ph=$2; good=$3; rows=$4
    printf '%s\n' "$cmds" > "$tmp/cmds"
    while IFS= read -r c; do
        prog=${c%% *}; rest=${c#* }; sub=${rest%% *}
        bin=$B/$prog
        if ! have "$bin" "$sub"; then
            echo "SKIP: $prog $sub does not exist (yet) in $B"; skip=$((skip + 1)); continue
        fi
        # shellcheck disable=SC2046 # split on purpose: no argument holds spaces
        set -- $(printf '%s\n' "$rest" | sed -e "s|$ph|$good|g" -e "s|@O|$out|g")
        expect_ok "$prog $sub" "$bin" "$@"
        while IFS='|' read -r f l t; do
            # shellcheck disable=SC2046 # split on purpose: no argument holds spaces
            set -- $(printf '%s\n' "$rest" | sed -e "s|$ph|$BAD/$f|g" -e "s|@O|$out|g")
            expect_refusal "$BAD/$f" "$l" "$t" "$bin" "$@"
        done < "$rows"
    done < "$tmp/cmds"
}

# Rows of one README table: "| FILE | what | text | line |" -> "FILE|line|text".
table_rows() {
    grep "^| $1" "$BAD/README.md" | sed -e 's/^| *//' -e 's/ *| */|/g' -e 's/|$//' |
        awk -F'|' '{ print $1 "|" $4 "|" $3 }'
}

# --- structure files: xyz_* (line and text from the table; the valid-XYZ
# row "-" means the frame's count line 1 and any message) and phys_*.
table_rows xyz_ | sed -e 's/^\([^|]*\)|-|.*/\1|1|/' > "$tmp/rows_xyz"
table_rows phys_ | sed -e 's/|[^|]*$/|/' >> "$tmp/rows_xyz"
table_rows cli_ >> "$tmp/rows_xyz"
# every corpus file must have a row
for f in "$BAD"/xyz_* "$BAD"/phys_* "$BAD"/cli_* "$BAD"/eann_* "$BAD"/kqeq_*; do
    [ -e "$f" ] || continue
    n=$(basename "$f")
    if grep -q "^| $n |" "$BAD/README.md"; then pass=$((pass + 1))
    else note_fail "$f has no row in $BAD/README.md"; fi
done
run_table "$STRUCT_CMDS" @F "$GOOD" "$tmp/rows_xyz"

# phys_* with the program-specific reason
for f in "$BAD"/phys_*.xyz; do
    [ -e "$f" ] || continue
    if have "$KQEQ" predict; then
        expect_refusal "$f" 6 "closer than 1e-6 angstrom" "$KQEQ" predict -m "$R/kqeq_small.model" "$f" -o "$out/out.xyz"
    fi
    if have "$EANN" predict; then
        expect_refusal "$f" 6 "not more than the model's min_distance" "$EANN" predict -m "$R/eann_tiny.txt" "$f" -o "$out/out.xyz"
    fi
done

# --- model files
table_rows eann_ > "$tmp/rows_eann"
table_rows kqeq_ > "$tmp/rows_kqeq"
run_table "$EANN_MODEL_CMDS" @M "$R/eann_tiny.txt" "$tmp/rows_eann"
run_table "$KQEQ_MODEL_CMDS" @M "$R/kqeq_small.model" "$tmp/rows_kqeq"
# the wrong kind of model: refused at line 1 (a file that is a valid model of
# the other kind, such as kqeq_eann_file.model, is left out)
sed -e 's/|.*//' -e 's/$/|1|damaged or truncated kqeq model text/' "$tmp/rows_eann" > "$tmp/cross_k"
: > "$tmp/cross_e"
while IFS='|' read -r f l t; do
    [ "$(head -n 1 "$BAD/$f")" = EANN_TEXT_V1 ] && continue
    echo "$f|1|first line must be exactly 'EANN_TEXT_V1'" >> "$tmp/cross_e"
done < "$tmp/rows_kqeq"
run_table "kqeq predict -m @M $GOOD -o @O/out.xyz" @M "$R/kqeq_small.model" "$tmp/cross_k"
run_table "eann predict -m @M $GOOD -o @O/out.xyz" @M "$R/eann_tiny.txt" "$tmp/cross_e"

# --- a refused run leaves an existing output file as it was
keep_old() { # keep_old OUTNAME CMD... (the command writes $out/OUTNAME)
    name=$1; shift
    echo "old contents" > "$out/$name"
    run_refused "$@"
    if [ "$rc" -ne 0 ] && [ "$(cat "$out/$name")" = "old contents" ] && [ "$(ls -A "$out")" = "$name" ]; then
        pass=$((pass + 1))
    else
        note_fail "$* -> exit $rc; existing $name changed or other files left: $(ls -A "$out")"
    fi
    rm -rf "$out"; mkdir -p "$out"
}
bx=$BAD/xyz_truncated_frame.xyz
have "$KQEQ" predict && keep_old out.xyz "$KQEQ" predict -m "$R/kqeq_small.model" "$bx" -o "$out/out.xyz"
have "$KQEQ" train && keep_old out.model "$KQEQ" train --train "$bx" --dipole-key dip --quiet -o "$out/out.model"
have "$EANN" predict && keep_old out.xyz "$EANN" predict -m "$R/eann_tiny.txt" "$bx" -o "$out/out.xyz"
have "$EANN" train && keep_old out.model "$EANN" train --train "$bx" --target dipole --key dip --quiet -o "$out/out.model"
have "$EANN" predict && keep_old out.xyz "$EANN" predict -m "$BAD/eann_truncated.txt" "$GOOD" -o "$out/out.xyz"

if [ "$skip" -gt 0 ]; then echo "test_bad_inputs: $pass passed, $fail failed, $skip skipped"
else echo "test_bad_inputs: $pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
