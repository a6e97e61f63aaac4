#!/usr/bin/env bash
# The paper's grid in one command: every MODE x MEM_MANAGE x MEM_SIZE x seed on one data set, plus
# the joint upper bound, as Hydra multiruns; then the mean ± std table (python -m runner.report).
#   bash experiment.sh             run the grid, then print the table (also in $OUT/report.md)
#   bash experiment.sh --dry-run   print the commands only
# Edit the variables below, or set them for one call: DATASET=mnist MODE="er rm" bash experiment.sh
set -euo pipefail

# CIL CONFIG: each variable is one Hydra override; "" leaves the config's default; a,b,c sweeps.
MODE=${MODE-"finetune er rm gdumb icarl ewc rwalk bic"}  # mode=, space-separated; missing modes are skipped
JOINT=${JOINT-true}               # true: also run mode=joint, whose accuracy gives I_last
MEM_MANAGE=${MEM_MANAGE-default}  # mem_manage=: default (each mode's own), random, reservoir, uncertainty, prototype
DATASET=${DATASET-digits}         # dataset=: digits (embedded), mnist, fashion_mnist, cifar10, cifar100, imagenet
STREAM=${STREAM-online}           # stream=: online, offline
EXP=${EXP-blurry10}               # exp=: disjoint, blurry10, blurry30
MEM_SIZE=${MEM_SIZE-}             # mem_size=: "" = the data set's paper K (mnist 500, cifar100 2000); 200,500,1000 sweeps
TRANS=${TRANS-}                   # trans=: space-separated augmentations; the paper's RM: "cutmix autoaug"
SEEDS=${SEEDS-"range(1,4)"}       # seed=: seeds 1, 2, 3 (split_seed follows seed)
EXPERIMENT=${EXPERIMENT-}         # experiment=: a conf/experiment preset, applied before the variables above
LAUNCHER=${LAUNCHER-joblib}       # hydra/launcher=: basic (one job at a time), joblib, submitit_local, slurm, ray
N_JOBS=${N_JOBS-2}                # hydra.launcher.n_jobs= (joblib): jobs at once, each with cores/N_JOBS threads
EXTRA=${EXTRA-}                   # more overrides, space-separated, e.g. "n_epoch=1 device=cuda"
OUT=${OUT-multirun/experiment_${DATASET:-preset}_${EXP:-preset}_${STREAM:-preset}_$(date +%Y%m%d-%H%M%S)}
# FINISH CIL CONFIG

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
default_python=python
[[ -x .venv/bin/python ]] && default_python=.venv/bin/python
[[ $LAUNCHER == ray && -x .venv-ray/bin/python ]] && default_python=.venv-ray/bin/python  # docs/sweeps.md
PYTHON=${PYTHON-$default_python}  # the interpreter that has rainbow-runner installed

DRY_RUN=false
for arg in "$@"; do
    case $arg in
        --dry-run | -n) DRY_RUN=true ;;
        -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done

show() {  # print a command so that it can be pasted back into a shell
    local word words=()
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then words+=("$word"); else words+=("'$word'"); fi
    done
    echo "${words[*]}"
}

modes=()
for mode in $MODE; do
    if [[ $mode == joint ]]; then
        JOINT=true
    elif [[ -f conf/mode/$mode.yaml ]]; then
        modes+=("$mode")
    else
        echo "skip mode=$mode: conf/mode/$mode.yaml does not exist" >&2
    fi
done

common=()
[[ -n $EXPERIMENT ]] && common+=("experiment=$EXPERIMENT")
[[ -n $DATASET ]] && common+=("dataset=$DATASET")
[[ -n $EXP ]] && common+=("exp=$EXP")
[[ -n $TRANS ]] && common+=("trans=[${TRANS// /,}]")
common+=("seed=$SEEDS" "progress=false")
case $LAUNCHER in
    basic) common+=() ;;
    joblib) common+=("hydra/launcher=joblib" "hydra.launcher.n_jobs=$N_JOBS") ;;
    *) common+=("hydra/launcher=$LAUNCHER") ;;
esac
read -ra extra <<< "$EXTRA"

commands=()  # each entry: a name, then the command words, separated by newlines
if [[ ${#modes[@]} -gt 0 ]]; then
    grid=("$PYTHON" -m runner --multirun "mode=$(IFS=,; echo "${modes[*]}")" "mem_manage=$MEM_MANAGE")
    [[ -n $STREAM ]] && grid+=("stream=$STREAM")
    [[ -n $MEM_SIZE ]] && grid+=("mem_size=$MEM_SIZE")
    grid+=("${common[@]}" "${extra[@]}" "hydra.sweep.dir=$OUT/grid")
    commands+=("$(printf '%s\n' grid "${grid[@]}")")
fi
if [[ $JOINT == true ]]; then  # joint trains offline on everything: no stream, no memory
    joint=("$PYTHON" -m runner --multirun mode=joint stream=offline mem_size=0)
    joint+=("${common[@]}" "${extra[@]}" "hydra.sweep.dir=$OUT/joint")
    commands+=("$(printf '%s\n' joint "${joint[@]}")")
fi
if [[ ${#commands[@]} -eq 0 ]]; then
    echo "error: nothing to run (MODE=\"$MODE\", JOINT=$JOINT)" >&2
    exit 2
fi
report=("$PYTHON" -m runner.report "$OUT")

failed=()
for entry in "${commands[@]}"; do
    mapfile -t words <<< "$entry"
    name=${words[0]}
    command=("${words[@]:1}")
    show "${command[@]}"
    if [[ $DRY_RUN == false ]] && ! "${command[@]}"; then
        failed+=("$name")
        echo "experiment.sh: the $name sweep had failures; its finished runs are kept" >&2
    fi
done
show "${report[@]}"
[[ $DRY_RUN == true ]] && exit 0
"${report[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "experiment.sh: failed sweeps: ${failed[*]} (see the runs listed above)" >&2
    exit 1
fi
