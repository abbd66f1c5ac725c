#!/bin/sh
# SPDX-License-Identifier: MIT
# bench_peers.sh - issue 14's speed table: every job run by our programs and by its peer in
# the same run, one thread, processor time (user + system seconds of the process, or the
# programs' own processor-time figures), warm-up before timing. Per-call jobs (SOAP steady
# state, EANN inference) compare the same statistic on both sides: the fastest pass over
# the file after the first (the peers' drivers time it so, and `kqeq soap --repeat` /
# `eann predict --repeat` print it); the means are in the log. Prints, per job: ours, the
# peer, the ratio (how many times ours is faster; for growth rows the growth itself), the
# issue's goal and whether it is met. A peer that cannot run here is printed as "absent",
# never replaced by a recorded number.
#
# Peers (not part of the project; our drivers in bench/peers/ only call them):
#   DScribe SOAP and the NumPy kQEq peer   ../shared/peers (PYTHONPATH=.../dscribe)
#   PyTorch (Debian python3-torch)         bench/peers/torch_eann.py (batched EANN written
#                                          from FORMAT.md) and the published TorchScript models
# Usage: B=build sh bench/bench_peers.sh      (full run: ~6.5 min of processor time, 21 min wall
#                                             on a loaded 2-vCPU machine)
#        QUICK=1 sh bench/bench_peers.sh      (smaller jobs, ~2.5 min of processor time; the
#                                             table names the sizes)
# Environment: TENSORIAL_SHARED (default ../shared), PYTHON (default /usr/bin/python3),
#   KQEQ_TRAIN, KQEQ_TEST, KQEQ_KEY, KQEQ_UNIT, KQEQ_SPECIES (the kQEq job's data; default
#   data/qm9like train/test, xtb_dipole in au, H,C,N,O,F), EANN_DATA (training file, default
#   data/nma/train_T300.xyz with pm7_dipole / pm7_polarizability), PARTS (default all, or
#   some of: kqeq soap eann_train eann_infer qeq).
B=${B:-build}
QUICK=${QUICK:-0}
S=${TENSORIAL_SHARED:-../shared}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
K="$B/kqeq"
E="$B/eann"
for p in "$K" "$E"; do
    [ -x "$p" ] || { echo "bench_peers: $p not built (run make)" >&2; exit 1; }
done
W="$B/bench-peers"
rm -rf "$W" && mkdir -p "$W" || exit 1
TABLE="$W/table"
: > "$TABLE"
LOG="$W/log"
: > "$LOG"
say() { echo "$*"; echo "$*" >> "$LOG"; }

# --- what can run here -------------------------------------------------------------------------
have_py=0; have_ds=0; have_kq=0; have_torch=0; have_pt=0
"$PY" -c 'import sys' 2> /dev/null && have_py=1
if [ $have_py = 1 ]; then
    PYTHONPATH="$S/peers/dscribe" "$PY" -c 'from dscribe.descriptors import SOAP; import ase' \
        2> "$W/dscribe_import.err" && have_ds=1
    # say why DScribe is absent (usually a missing Debian package: it imports sparse,
    # joblib and sklearn; ../shared/peers/README.md lists them)
    [ $have_ds = 1 ] || say "DScribe absent: $(tail -n 1 "$W/dscribe_import.err")" \
        "(apt-get install python3-ase python3-scipy python3-sklearn python3-sparse python3-joblib)"
    [ $have_ds = 1 ] && [ -f "$S/peers/kqeq_numpy.py" ] &&
        PYTHONPATH="$S/peers/dscribe" "$PY" -c 'import scipy.linalg, scipy.sparse' 2> /dev/null && have_kq=1
    "$PY" -c 'import torch, scipy.spatial, ase' 2> /dev/null && have_torch=1
    [ $have_torch = 1 ] && [ -f "$S/peers/eann_published_pt/dm.pt" ] && have_pt=1
fi
PUB="$S/eann_nma_published"
have_pub=0; [ -f "$PUB/dm.txt" ] && [ -f "$PUB/pol.txt" ] && [ -f "$PUB/reference_20.xyz" ] && have_pub=1

# --- helpers -----------------------------------------------------------------------------------
# run_cpu NAME CMD...: runs CMD (stdout to $W/NAME.out, stderr to $W/NAME.err); sets CPU
# (processor seconds) and RSS (peak MB); returns CMD's status. Precise timing with the
# python3 helper; else /usr/bin/time (10 ms steps).
run_cpu() {
    _n=$1; shift
    if [ $have_py = 1 ]; then
        "$PY" bench/peers/cputime.py "$W/$_n.cpu" "$@" > "$W/$_n.out" 2> "$W/$_n.err"
        st=$?
        CPU=$(awk '{print $2}' "$W/$_n.cpu"); RSS=$(awk '{print $4}' "$W/$_n.cpu")
    else
        /usr/bin/time -f 'cpu_s %U %S maxrss_kb %M' -o "$W/$_n.cpu" "$@" > "$W/$_n.out" 2> "$W/$_n.err"
        st=$?
        CPU=$(awk '/cpu_s/ {print $2 + $3}' "$W/$_n.cpu"); RSS=$(awk '/cpu_s/ {print $5 / 1024}' "$W/$_n.cpu")
    fi
    [ $st = 0 ] || { echo "bench_peers: failed: $*" >&2; sed 's/^/  /' "$W/$_n.err" | tail -5 >&2; }
    return $st
}
py_peer() { # NAME CMD...: a peer in Python; stdout to $W/NAME.out
    _n=$1; shift
    PYTHONPATH="$S/peers/dscribe" "$PY" "$@" > "$W/$_n.out" 2> "$W/$_n.err" ||
        { echo "bench_peers: peer failed: $*" >&2; tail -5 "$W/$_n.err" >&2; return 1; }
}
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }          # calc EXPR
fcalc() { awk "BEGIN { printf \"$1\", $2 }"; }           # fcalc FORMAT EXPR
# row JOB OURS PEER RATIO GOAL STATUS (one table line; '|' separated)
row() {
    r=$4; case "$r" in -x|"growth x") r=- ;; esac
    printf '%s|%s|%s|%s|%s|%s\n' "$1" "$2" "$3" "$r" "$5" "$6" >> "$TABLE"
}
# verdict VALUE OP LIMIT -> met / not met (VALUE "-" -> "-")
verdict() {
    case "$1" in -|absent|"") echo "-"; return ;; esac
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v >= l) : (v <= l);
        print ok ? "met" : "NOT met" }'
}
first_frames() { # N IN OUT: the first N frames of an extended XYZ file
    awk -v max="$1" 'left == 0 { if (nf >= max) exit; left = $1 + 2; nf++ } { print; left-- }' "$2" > "$3"
}
minof() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
atoms_of() { awk 'left == 0 { left = $1 + 2; na += $1 } { left-- } END { print na + 0 }' "$1"; }

if [ "$QUICK" = 1 ]; then
    say "bench_peers: QUICK=1 (smaller jobs; the table names the sizes)"
fi
say "peers: python=$have_py dscribe=$have_ds kqeq_numpy=$have_kq torch=$have_torch torchscript=$have_pt published_models=$have_pub"
[ $have_py = 1 ] && "$PY" -c 'import numpy; print("numpy", numpy.__version__)' 2> /dev/null | tee -a "$LOG"
[ $have_torch = 1 ] && "$PY" -c 'import torch; print("torch", torch.__version__)' 2> /dev/null | tee -a "$LOG"
[ -f "$S/peers/dscribe/COMMIT" ] && say "dscribe commit $(cat "$S/peers/dscribe/COMMIT")"
# the machine: ratios differ between kinds of CPU (README: two machines' tables)
if [ -r /proc/cpuinfo ]; then
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    fam=$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    mod=$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    isa=$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|fma|avx512f' | paste -s -d ' ' -)
    say "machine: $cpu (family $fam, model $mod); $(getconf _NPROCESSORS_ONLN 2> /dev/null) CPUs; ${isa:-no AVX2}"
fi

# large water frames (bench/data/make_water_frame.py; not shipped, made here)
for n in 1000 10000; do
    "$PY" bench/data/make_water_frame.py $n "$W/water$((n / 1000))k.xyz" 2> /dev/null ||
        python3 bench/data/make_water_frame.py $n "$W/water$((n / 1000))k.xyz" ||
        { echo "bench_peers: cannot make the water frames (python3 needed)" >&2; exit 1; }
done
# SOAP repeats divided by SCALE, peers' timed seconds PSEC, best of NBEST runs
if [ "$QUICK" = 1 ]; then SCALE=4; PSEC=0.3; NBEST=2; else SCALE=1; PSEC=1; NBEST=3; fi

# --- 1. kQEq training job ----------------------------------------------------------------------
sec_kqeq() {
KTR=${KQEQ_TRAIN:-data/qm9like/train.xyz}
KTE=${KQEQ_TEST:-data/qm9like/test.xyz}
KKEY=${KQEQ_KEY:-xtb_dipole}
KUNIT=${KQEQ_UNIT:-au}
KSP=${KQEQ_SPECIES:-H,C,N,O,F}
if [ "$QUICK" = 1 ]; then KSIZES="100 200"; KNTE=100; else KSIZES="100 1000"; KNTE=1000; fi
KM=1000; KSIG=1e-3
if [ -s "$KTR" ] && [ -s "$KTE" ]; then
    say "== kQEq job: train on the first $(echo $KSIZES | sed 's/ / and /') frames of $KTR (SOAP rc 3.5 n8 l6 over $KSP, M $KM by FPS, sigma $KSIG, no validation scan) + classical QEq on the largest, each evaluated on the first $KNTE frames of $KTE"
    first_frames "$KNTE" "$KTE" "$W/ktest.xyz"
    tot=0; ok=1
    for n in $KSIZES; do
        first_frames "$n" "$KTR" "$W/ktrain$n.xyz"
        run_cpu "ktrain$n" "$K" train --quiet --train "$W/ktrain$n.xyz" --dipole-key "$KKEY" \
            --dipole-unit "$KUNIT" --species "$KSP" --soap rcut=3.5,nmax=8,lmax=6 --sparse $KM \
            --reg $KSIG -o "$W/kmodel$n" || ok=0
        t1=$CPU
        run_cpu "keval$n" "$K" eval -m "$W/kmodel$n" "$W/ktest.xyz" --dipole-key "$KKEY" --dipole-unit "$KUNIT" || ok=0
        say "  ours kQEq-$n: train $t1 s, eval $CPU s, test MAE $(awk '/MAE_debye/ {print $2}' "$W/keval$n.out") D"
        tot=$(calc "$tot + $t1 + $CPU")
    done
    run_cpu kqtrain "$K" train --quiet --model qeq --train "$W/ktrain$n.xyz" --dipole-key "$KKEY" \
        --dipole-unit "$KUNIT" --species "$KSP" -o "$W/qmodel" || ok=0
    t1=$CPU
    run_cpu kqeval "$K" eval -m "$W/qmodel" "$W/ktest.xyz" --dipole-key "$KKEY" --dipole-unit "$KUNIT" || ok=0
    say "  ours QEq-$n: train $t1 s, eval $CPU s, test MAE $(awk '/MAE_debye/ {print $2}' "$W/kqeval.out") D"
    tot=$(calc "$tot + $t1 + $CPU")
    tot=$(fcalc "%.1f" "$tot"); [ $ok = 1 ] || tot=failed
    say "  ours total: $tot s"
    peer=absent
    if [ $have_kq = 1 ]; then
        if py_peer kpeer bench/peers/kqeq_job.py "$KTR" "$KTE" "$KKEY" "$KUNIT" \
            "$(echo $KSIZES | tr ' ' ',')" $KNTE $KM $KSIG "$KSP"; then
            sed 's/^/  /' "$W/kpeer.out" | tee -a "$LOG"
            peer=$(awk '/^cpu_s/ {print $2}' "$W/kpeer.out")
        else peer=failed; fi
    fi
    ratio=-; case "$peer$tot" in *absent*|*failed*) ;; *) ratio=$(fcalc "%.2f" "$peer / $tot") ;; esac
    row "kQEq: train $(echo $KSIZES | tr ' ' '+') (M $KM) + QEq, eval each on $KNTE [CPU s]" "$tot" "$peer" "${ratio}x" ">= 2x" "$(verdict "$ratio" ">=" 2)"
else
    say "== kQEq job: $KTR or $KTE not found; skipped"
fi
}

# --- 2./3. SOAP steady state and first call ----------------------------------------------------
sec_soap() {
SOAPFILES="bench/data/nma.xyz:2000 bench/data/nma25.xyz:60 bench/data/water216.xyz:40 $W/water1k.xyz:50 $W/water10k.xyz:10"
say "== SOAP rc 3.5 n8 l6 sigma rc/8, species H,C,N,O, every atom a centre"
if [ $have_ds = 1 ]; then
    files=""; for fk in $SOAPFILES; do files="$files ${fk%:*}"; done
    py_peer dscribe bench/peers/dscribe_soap.py --seconds $PSEC $files || true
fi
for fk in $SOAPFILES; do
    f=${fk%:*}; k=$(( ${fk#*:} / SCALE )); [ $k -ge 2 ] || k=2
    nat=$(atoms_of "$f")
    # --repeat k+1, each pass over the file timed in processor time by the program: the
    # first pass (first call included) and the fastest of the other k, best of NBEST runs
    # (DScribe's figures are the same two: its first pass and its fastest pass); the mean
    # of the k+1 passes is logged too
    u1=; um=; ua=
    for _r in $(seq $NBEST); do
        "$K" soap --rcut 3.5 --nmax 8 --lmax 6 --species H,C,N,O --repeat $((k + 1)) "$f" > "$W/soap_run.out"
        u1=$(minof "$u1" "$(sed -n 's/^first_us_per_atom //p' "$W/soap_run.out")")
        um=$(minof "$um" "$(sed -n 's/^min_us_per_atom //p' "$W/soap_run.out")")
        ua=$(minof "$ua" "$(sed -n 's/^us_per_atom //p' "$W/soap_run.out")")
    done
    # steady: the fastest pass after the first; first-call extra: the first pass minus it
    steady=$(fcalc "%.2f" "$um")
    first=$(fcalc "%.1f" "($u1 - $steady) * $nat / 1000")
    dsu=absent; dsf=absent
    if [ $have_ds = 1 ]; then
        dsu=$(awk -v f="$f" '$1 == f {print $7}' "$W/dscribe.out"); dsf=$(awk -v f="$f" '$1 == f {print $5}' "$W/dscribe.out")
        [ -n "$dsu" ] || { dsu=failed; dsf=failed; }
    fi
    name=$(basename "$f" .xyz)
    dsm=$(awk -v f="$f" '$1 == f {print $11}' "$W/dscribe.out" 2> /dev/null)
    say "  $name ($nat atoms): ours steady $steady us/atom (fastest of $k passes; mean of all $ua), first call +$first ms; DScribe $dsu us/atom (fastest pass; mean ${dsm:-absent}), first +$dsf ms"
    ratio=-; case "$dsu" in absent|failed) ;; *) ratio=$(fcalc "%.1f" "$dsu / $steady") ;; esac
    row "SOAP steady, $name ($nat atoms) [us/atom]" "$steady" "$dsu" "${ratio}x" ">= 10x" "$(verdict "$ratio" ">=" 10)"
    echo "$name $steady $first $dsu $dsf" >> "$W/soap.res"
done
while read -r name steady first dsu dsf; do
    row "SOAP first call, $name [ms extra]" "$first" "$dsf" "-" "< 10 ms" "$(verdict "$first" "<=" 10)"
done < "$W/soap.res"
}

# --- 4. EANN training throughput ---------------------------------------------------------------
sec_eann_train() {
ED=${EANN_DATA:-data/nma/train_T300.xyz}
if [ "$QUICK" = 1 ]; then EN=300; EEP=2; else EN=1000; EEP=4; fi
if [ -s "$ED" ]; then
    say "== EANN training: first $EN frames of $ED (10 % validation), $EEP epochs, batch 32, Adam; K 8, P 3, rc 6, hidden 64,64"
    for t in dipole:pm7_dipole polarizability:pm7_polarizability; do
        tg=${t%%:*}; key=${t#*:}
        ours=$("$E" train --train "$ED" --max-frames $EN --target "$tg" --key "$key" --epochs $EEP \
            --batch 32 --seed 1 --quiet -o "$W/eann_$tg.txt" 2>&1 | sed -n 's/.*wall, \([0-9.]*\) per CPU second.*/\1/p')
        [ -n "$ours" ] || ours=failed
        peer=absent
        if [ $have_torch = 1 ]; then
            if py_peer "torch_train_$tg" bench/peers/torch_eann.py train "$ED" "$key" "$tg" $EN $EEP; then
                peer=$(awk '{print $2}' "$W/torch_train_$tg.out")
            else peer=failed; fi
        fi
        say "  $tg: ours $ours, PyTorch $peer molecule-gradients per CPU s"
        ratio=-; case "$peer$ours" in *absent*|*failed*) ;; *) ratio=$(fcalc "%.2f" "$ours / $peer") ;; esac
        row "EANN training, $tg [molecule-gradients/CPU s]" "$ours" "$peer" "${ratio}x" ">= 5x" "$(verdict "$ratio" ">=" 5)"
    done
else
    say "== EANN training: $ED not found; skipped"
fi
}

# --- 5. EANN inference, one NMA per call -------------------------------------------------------
sec_eann_infer() {
if [ $have_pub = 1 ]; then
    if [ "$QUICK" = 1 ]; then EK=200; else EK=1000; fi
    say "== EANN inference: published NMA models on $PUB/reference_20.xyz (20 frames)"
    for m in dm pol; do
        # the fastest pass over the 20 frames after the first, in processor time per
        # molecule (the peers' figure: their fastest pass), best of NBEST runs of --repeat
        # EK; and the processor time of --repeat 10+EK minus --repeat 10 (the mean, logged)
        a=; b=; ours=
        for _r in $(seq $NBEST); do
            run_cpu "inf_${m}_a" "$E" predict -m "$PUB/$m.txt" "$PUB/reference_20.xyz" --repeat 10; a=$(minof "$a" "$CPU")
            run_cpu "inf_${m}_b" "$E" predict -m "$PUB/$m.txt" "$PUB/reference_20.xyz" --repeat $((10 + EK)); b=$(minof "$b" "$CPU")
            ours=$(minof "$ours" "$(sed -n 's/^min_cpu_us_per_molecule //p' "$W/inf_${m}_b.out")")
        done
        ours=$(fcalc "%.2f" "$ours")
        mean=$(fcalc "%.2f" "($b - $a) * 1e6 / ($EK * 20)")
        jit=absent; bat=absent
        if [ $have_pt = 1 ]; then
            py_peer "jit_$m" bench/peers/torch_eann.py jit "$S/peers/eann_published_pt/$m.pt" "$PUB/reference_20.xyz" $PSEC &&
                jit=$(awk '{print $2}' "$W/jit_$m.out") || jit=failed
        fi
        if [ $have_torch = 1 ]; then
            py_peer "bat_$m" bench/peers/torch_eann.py infer "$PUB/$m.txt" "$PUB/reference_20.xyz" 32 $PSEC &&
                bat=$(awk '{print $2}' "$W/bat_$m.out") || bat=failed
            py_peer "chk_$m" bench/peers/torch_eann.py check "$PUB/$m.txt" "$PUB/reference_20.xyz" &&
                sed 's/^/  PyTorch peer /' "$W/chk_$m.out" | tee -a "$LOG"
        fi
        say "  $m: ours $ours us/molecule (fastest pass; mean $mean); TorchScript one per call $jit; batched PyTorch (32) $bat (fastest passes)"
        r1=-; case "$jit" in absent|failed) ;; *) r1=$(fcalc "%.0f" "$jit / $ours") ;; esac
        r2=-; case "$bat" in absent|failed) ;; *) r2=$(fcalc "%.1f" "$bat / $ours") ;; esac
        row "EANN inference $m, 1 NMA/call vs TorchScript [us]" "$ours" "$jit" "${r1}x" ">= 100x" "$(verdict "$r1" ">=" 100)"
        row "EANN inference $m vs batched PyTorch (32/call) [us]" "$ours" "$bat" "${r2}x" ">= 10x" "$(verdict "$r2" ">=" 10)"
    done

    # --- 6. one large frame: EANN (dm model) and SOAP, 1k -> 10k atoms ------------------------
    say "== one large water frame (dm model, cutoff 6 A): per atom, 1k -> 10k atoms"
    if [ "$QUICK" = 1 ]; then BIG="water1k:10 water10k:2"; else BIG="water1k:50 water10k:6"; fi
    for w in $BIG; do
        f="$W/${w%:*}.xyz"; k=${w#*:}; nat=$(atoms_of "$f")
        a=; b=   # processor time of --repeat 1+k minus --repeat 1, best of NBEST runs each
        for _r in $(seq $NBEST); do
            run_cpu "big_${w%:*}_a" "$E" predict -m "$PUB/dm.txt" "$f" --repeat 1; a=$(minof "$a" "$CPU")
            run_cpu "big_${w%:*}_b" "$E" predict -m "$PUB/dm.txt" "$f" --repeat $((1 + k)); b=$(minof "$b" "$CPU"); rss=$RSS
        done
        first=$(fcalc "%.0f" "($a - ($b - $a) / $k) * 1000")
        per=$(fcalc "%.2f" "($b - $a) * 1e6 / ($k * $nat)")
        say "  ${w%:*} ($nat atoms): ours $per us/atom steady (repeat $k), peak RSS $rss MB; loading + first-call extra $first ms"
        echo "$per $rss" > "$W/big_${w%:*}.res"
    done
    read -r p1 m1 < "$W/big_water1k.res"; read -r p10 m10 < "$W/big_water10k.res"
    g=$(fcalc "%.2f" "$p10 / $p1")
    row "EANN large frame, us/atom 1k -> 10k (RSS $m1 -> $m10 MB)" "$p1 -> $p10" "-" "growth ${g}x" "<= 1.5x" "$(verdict "$g" "<=" 1.5)"
else
    say "== EANN inference and large frames: $PUB not found (published models absent); skipped"
fi
}
sec_soap_large() {
[ -s "$W/soap.res" ] || return 0
s1=$(awk '$1 == "water1k" {print $2}' "$W/soap.res"); s10=$(awk '$1 == "water10k" {print $2}' "$W/soap.res")
d1=$(awk '$1 == "water1k" {print $4}' "$W/soap.res"); d10=$(awk '$1 == "water10k" {print $4}' "$W/soap.res")
g=$(fcalc "%.2f" "$s10 / $s1")
dg=absent; case "$d1$d10" in *absent*|*failed*) ;; *) dg="$d1 -> $d10 ($(fcalc "%.2f" "$d10 / $d1")x)" ;; esac
row "SOAP large frame, us/atom 1k -> 10k" "$s1 -> $s10" "$dg" "growth ${g}x" "<= 1.5x" "$(verdict "$g" "<=" 1.5)"
}

# --- 7. classical QEq, one large frame ---------------------------------------------------------
sec_qeq() {
if [ "$QUICK" = 1 ]; then QN="1000 2000"; else QN="2000 4000"; fi
say "== classical QEq (kqeq qeq, default chi, eta 0), water frames of $(echo $QN | sed 's/ / and /') atoms"
for n in $QN; do
    "$PY" bench/data/make_water_frame.py $n "$W/qeq$n.xyz" 2> /dev/null || python3 bench/data/make_water_frame.py $n "$W/qeq$n.xyz"
    run_cpu "qeq$n" "$K" qeq "$W/qeq$n.xyz" && ours=$(fcalc "%.2f" "$CPU") || ours=failed
    peer=absent
    if [ $have_kq = 1 ]; then
        py_peer "qeqpeer$n" bench/peers/qeq_dense.py "$W/qeq$n.xyz" &&
            peer=$(awk '/^cpu_s/ {print $2}' "$W/qeqpeer$n.out") || peer=failed
    fi
    say "  $n atoms: ours $ours s (dipole $(awk '/^frame/ {print $8, $9, $10}' "$W/qeq$n.out") D); NumPy/OpenBLAS Cholesky $peer s ($(awk '/^natoms/ {print $4, $5, $6}' "$W/qeqpeer$n.out" 2> /dev/null) D)"
    echo "$n $ours $peer" >> "$W/qeq.res"
done
set -- $(awk '{print}' "$W/qeq.res" | tr '\n' ' ')
n1=$1 o1=$2 n2=$4 o2=$5 p2=$6
# time ~ n^e between the two sizes; estimates at 4000 and 10,000 atoms from the larger one
e=$(fcalc "%.2f" "log($o2 / $o1) / log($n2 / $n1)")
est4=$(fcalc "%.1f" "$o2 * (4000 / $n2) ^ $e")
est10=$(fcalc "%.0f" "$o2 * (10000 / $n2) ^ $e")
ratio=-; case "$p2" in absent|failed) ;; *) ratio=$(fcalc "%.1f" "$p2 / $o2") ;; esac
if [ "$n2" = 4000 ]; then
    row "classical QEq, 4000 atoms [CPU s]" "$o2" "$p2" "${ratio}x" "<= 5 s" "$(verdict "$o2" "<=" 5)"
else
    row "classical QEq, $n2 atoms [CPU s]" "$o2" "$p2" "${ratio}x" "-" "-"
    row "classical QEq, 4000 atoms, estimate (t ~ n^$e) [CPU s]" "$est4" "-" "-" "<= 5 s" "$(verdict "$est4" "<=" 5)"
fi
row "classical QEq, 10,000 atoms, estimate (t ~ n^$e) [CPU s]" "$est10" "-" "-" "<= 60 s" "$(verdict "$est10" "<=" 60)"
}

# --- run the parts asked for (PARTS, default all) ---------------------------------------------
want() { case " ${PARTS:-all} " in *" all "*|*" $1 "*) return 0 ;; esac; return 1; }
want kqeq && sec_kqeq
want soap && sec_soap
want eann_train && sec_eann_train
want eann_infer && sec_eann_infer
want soap && sec_soap_large
want qeq && sec_qeq

# --- the table ---------------------------------------------------------------------------------
echo
echo "== issue 14 table (one thread, processor time; ratio = how many times ours is faster, or growth)"
awk -F'|' 'BEGIN { printf "%-62s %16s %20s %14s %9s %8s\n", "job", "ours", "peer", "ratio", "goal", "status" }
    { printf "%-62s %16s %20s %14s %9s %8s\n", $1, $2, $3, $4, $5, $6 }' "$TABLE" | tee "$W/table.txt"
echo "(full log and outputs: $W/)"
