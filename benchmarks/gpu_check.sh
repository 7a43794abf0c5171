#!/usr/bin/env bash
# The GPU check: the CUDA test suite (tests/cuda), `make bench` on CUDA (render, generator and
# training suites: images/s, sec/kimg, peak memory allocated and reserved, paper presets at batch 4
# per GPU) and, when its code was carried along, the official EG3D / Mimic3D generators side by side
# on the same weights. Everything it writes goes under $OUT (default ./gpu-results): 7 files at most.
#
#   benchmarks/gpu_check.sh --prepare   on the development machine, once: puts what the GPU machine
#                                       lacks into .gpu_carry/ (in .gitignore): the wheels of
#                                       trimesh and imageio-ffmpeg, and the official code copied from
#                                       the local git mirrors ($MIMIC3D_MIRRORS, default /work/.mirror).
#                                       Nothing is cloned from the internet.
#   benchmarks/gpu_check.sh [PART...]   on the GPU machine; PARTs: tests, official, bench (default:
#                                       all). Every step has a time limit: tests 210 s, official 2 x 45 s,
#                                       bench 150 + 90 + 45 s (training, generator, render suites).
#
# With the device tool (10 minutes per command, 15 minutes of device time in all), two calls:
#   run(command="bash benchmarks/gpu_check.sh tests official", carry=[".gpu_carry"], timeout_s=330)
#   run(command="bash benchmarks/gpu_check.sh bench", carry=[".gpu_carry"], timeout_s=330)
# The second call's $OUT replaces the first's files: fetch (or note) those in between.
# Limits (seconds): TESTS_SECONDS, OFFICIAL_SECONDS, TRAINING_SECONDS, GENERATOR_SECONDS, RENDER_SECONDS.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARRY=.gpu_carry
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    MIRRORS=${MIMIC3D_MIRRORS:-/work/.mirror}
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/official"
    # Pure-Python trimesh and the manylinux imageio-ffmpeg wheel: imported by mimic3d, missing there.
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$CARRY/wheels" \
        trimesh imageio-ffmpeg || echo "pip download failed: the GPU run will need those packages"
    for pair in "NVlabs+eg3d:eg3d/" "SeanChenxy+Mimic3D:"; do
        repo=${pair%%:*} sub=${pair#*:} name=${repo#*+}
        if [ -d "$MIRRORS/$repo/repo" ]; then
            mkdir -p "$CARRY/official/$name"
            git -C "$MIRRORS/$repo/repo" archive HEAD $sub | tar -x -C "$CARRY/official/$name"
            [ -n "$sub" ] && mv "$CARRY/official/$name/$sub"* "$CARRY/official/$name/" && rmdir "$CARRY/official/$name/$sub"
            # The visualiser, GUI and scripts are not imported; keep the carried tree small.
            rm -rf "$CARRY/official/$name"/{viz,gui_utils,scripts,third_parties,dataset_preprocessing}
        else
            echo "no mirror $MIRRORS/$repo/repo: the official $name code will not run side by side"
        fi
    done
    du -sh "$CARRY"
    echo 'carry: [".gpu_carry"]   (the working tree plus this must stay under 64 MiB)'
    exit 0
fi

OUT=${OUT:-$ROOT/gpu-results}
mkdir -p "$OUT"
rm -f "$OUT"/*.log  # logs are appended to within one run
SUMMARY="$OUT/summary.txt"
PARTS=${*:-tests official bench}
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/mimic3d-site "$CARRY"/wheels/*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/mimic3d-site"
fi
{
    echo "gpu_check $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), parts: $PARTS"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count())" 2>&1
} >"$SUMMARY"

run_part() { # name, seconds, log file, command...
    local name=$1 seconds=$2 log=$3 start status
    shift 3
    start=$(date +%s)
    timeout --kill-after=10 "$seconds" "$@" >>"$log" 2>&1
    status=$?
    echo "$name: exit $status after $(($(date +%s) - start)) s (limit $seconds s; 124 = timed out), log $(basename "$log")" >>"$SUMMARY"
}

for part in $PARTS; do
    case $part in
    tests)
        run_part "tests/cuda" "${TESTS_SECONDS:-210}" "$OUT/cuda-tests.log" \
            $PY -m pytest -q -rA -p no:cacheprovider tests/cuda --junitxml="$OUT/cuda-tests.xml"
        tail -n 3 "$OUT/cuda-tests.log" >>"$SUMMARY"
        ;;
    bench)
        # One suite per run, each appending its table, so that a suite cut by its time limit costs only
        # its own rows. The memory suite's batch search (a process per probe) does not fit here.
        for suite in training:${TRAINING_SECONDS:-150} generator:${GENERATOR_SECONDS:-90} render:${RENDER_SECONDS:-45}; do
            run_part "make bench --only ${suite%%:*} (cuda)" "${suite#*:}" "$OUT/bench.log" \
                $PY -m benchmarks.run --device cuda --only "${suite%%:*}" --output "$OUT/BENCHMARKS-gpu.md"
        done
        ;;
    official)
        for case in eg3d-ffhq512:eg3d mimic3d-ffhq512:Mimic3D; do
            preset=${case%%:*} folder="$CARRY/official/${case#*:}"
            if [ ! -d "$folder/training" ]; then
                echo "official $preset: not run, $folder was not carried (gpu_check.sh --prepare)" >>"$SUMMARY"
                continue
            fi
            # A copy outside the repository: the official code runs from there.
            rm -rf "/tmp/official-${case#*:}" && cp -r "$folder" "/tmp/official-${case#*:}"
            run_part "official $preset" "${OFFICIAL_SECONDS:-45}" "$OUT/official-$preset.log" \
                $PY -m benchmarks.official_side_by_side --case "$preset" --official "/tmp/official-${case#*:}"
        done
        ;;
    *) echo "unknown part $part (expected tests, bench, official)" >>"$SUMMARY" ;;
    esac
done
cat "$SUMMARY"
