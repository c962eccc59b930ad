#!/usr/bin/env bash
# The GPU part of the speed work (issue: the whole AAE step as one CUDA graph), as one prepared script.
#
#   experiments/benchmarks/gpu_check.sh prepare     # here, once: .gpu/site (omegaconf) and .gpu/data (gzipped MNIST)
#   experiments/benchmarks/gpu_check.sh run cuda    # on a lent GPU: `run` with carry [".gpu"], timeout_s 540
#   experiments/benchmarks/gpu_check.sh run cpu     # the rehearsal here: every step, small and short
#
# run: (1) the steppers' equivalence on the device (cuda_graph against eager: 100 steps of each variant,
# weights allclose to eager); (2) a semi-supervised epoch through train.py with optim.stepper=cuda_graph
# against the plain loop captured as one CUDA graph; (3) 8 runs at once on the GPU against one alone.
# The tables go to $OUT/benchmarks-section.md (what comes back from the GPU machine) and are appended to
# docs/benchmarks.md of the tree it runs in, with the date and the device. About 6-8 minutes on an H200.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:?usage: gpu_check.sh prepare | run cuda|cpu}
device=${2:-cuda}
out=${OUT:-/tmp/gpu_check}

if [ "$what" = prepare ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
  python3 -m pip install -q --no-deps --target .gpu/site omegaconf==2.3.0 antlr4-python3-runtime==4.9.3
  mkdir -p .gpu/data/MNIST/raw
  for f in "${AAE_DATA_DIR:-../shared/data}"/MNIST/raw/*-ubyte; do
    gzip -c "$f" > ".gpu/data/MNIST/raw/$(basename "$f").gz"
  done
  du -sh .gpu
  exit 0
fi

export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}" AAE_DATA_DIR="$PWD/.gpu/data" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/aae-inductor  # the concurrent runs reuse the first run's compiled step
mkdir -p "$out"
if [ "$device" = cuda ]; then
  steps=100; small=""; limit=""; epochs=4; copies=8; adam=captured
  steppers="eager cuda_graph"  # compiled alone is checked on the CPU (tests/test_steppers.py): one compile less
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
else
  steps=3; small="--small"; limit="--limit-batches 4"; epochs=2; copies=2; adam=fused
  steppers="eager compiled cuda_graph"
  echo "cpu rehearsal: $(nproc) cores" | tee "$out/device.txt"
fi
common=(--variant semi_supervised --batch-size 100 --device "$device" --epochs "$epochs" $limit
        --override optim.stepper=cuda_graph --override logger.enabled=false --override callbacks.figures.enabled=false)

echo "== 1/3 steppers against eager"
python3 -m experiments.benchmarks.stepper_check --device "$device" --steps "$steps" $small --steppers $steppers \
  --json "$out/stepper.json" | tee "$out/stepper.txt" || echo "(some stepper differs from eager: see the table)"
echo "== 2/3 an epoch through train.py (cuda_graph) against the captured plain loop"
python3 -m experiments.benchmarks.epoch_time "${common[@]}" --adam "$adam" --json "$out/epoch.json" | tee "$out/epoch.txt"
echo "== 3/3 $copies runs at once against one alone"
python3 -m experiments.benchmarks.epoch_time "${common[@]}" --concurrent "$copies" --json "$out/concurrent.json" \
  | tee "$out/concurrent.txt"

{
  echo
  echo "## optim.stepper=cuda_graph on $(head -1 "$out/device.txt"), $(date -u +%Y-%m-%d) (experiments/benchmarks/gpu_check.sh)"
  echo
  for part in stepper epoch concurrent; do
    echo '```'
    grep -v '^W[0-9]' "$out/$part.txt"
    echo '```'
  done
} > "$out/benchmarks-section.md"
cat "$out/benchmarks-section.md" >> docs/benchmarks.md
cat "$out/benchmarks-section.md"
