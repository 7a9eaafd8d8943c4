#!/bin/sh
# The benchmark programs take the command lines their callers give them
# (bench/run, bench/gpu_compare.py, scripts/gpu-check), on a tiny exported
# backbone and a tiny image folder, and refuse flags they do not know.
#   callers_test.sh ENGINE_BENCH DISTRIBUTED_BENCH PEAK_FLOPS TRAIN_BENCH
set -eu
engine_bench=$1
distributed_bench=$2
peak_flops=$3
train_bench=$4
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# Runs a command that must succeed and print a JSON object holding `key`.
expect_json() {
  key=$1
  shift
  "$@" >"$work/out.json" 2>"$work/err.txt" || { cat "$work/err.txt" >&2; fail "$*"; }
  grep -q "\"$key\"" "$work/out.json" || { cat "$work/out.json" >&2; fail "no $key from $*"; }
}

# Runs a command that must fail with `status` and name `text` on stderr.
expect_refusal() {
  status=$1
  text=$2
  shift 2
  set +e
  "$@" >/dev/null 2>"$work/err.txt"
  got=$?
  set -e
  [ "$got" -eq "$status" ] || fail "exit $got, not $status: $*"
  grep -q -- "$text" "$work/err.txt" || { cat "$work/err.txt" >&2; fail "no '$text' from $*"; }
}

/usr/bin/python3 "$repo/tools/export_backbone.py" --arch smallcnn --out "$work/b.pt" --seed 1 \
  >/dev/null
backbone=$work/b.pt

# Three classes of six 40x40 PPM images (a format the engine reads).
/usr/bin/python3 - "$work/photos" <<'EOF'
import os, sys
for label in range(3):
    folder = os.path.join(sys.argv[1], "class%d" % label)
    os.makedirs(folder)
    for i in range(6):
        pixels = bytes((label * 80 + i * 7 + x) % 256 for x in range(40 * 40 * 3))
        with open(os.path.join(folder, "%d.ppm" % i), "wb") as f:
            f.write(b"P6 40 40 255\n" + pixels)
EOF

# bench/run
expect_json peak_gflops "$peak_flops" --threads 2 --repeats 1
expect_json peak_gflops "$peak_flops" --threads 2 --repeats 1 --dtype bf16
expect_json images_per_second "$train_bench" pipeline --threads 2 --loader_threads 2 \
  --data "$work/photos" --image_size 32 --batch 4
expect_json epochs "$train_bench" train --threads 2 --loader_threads 2 --strategy full \
  --backbone "$backbone" --data "$work/photos" --image_size 32 --batch 4 --epochs 1
expect_json epochs "$train_bench" train --threads 2 --loader_threads 2 --no_flip \
  --backbone "$backbone" --data "$work/photos" --image_size 32 --batch 4 --epochs 1 \
  --strategy feature_extraction --learning_rate 0.05
for precision in bf16 auto; do
  expect_json precision "$train_bench" train --threads 2 --loader_threads 2 --strategy full \
    --backbone "$backbone" --data "$work/photos" --image_size 32 --batch 4 --epochs 1 \
    --precision "$precision"
done
expect_json distributed_bench "$distributed_bench" --backbone "$backbone" --batch 4 --size 32 \
  --steps 2 --threads 1

# bench/gpu_compare.py and scripts/gpu-check, on the CPU
expect_json images_per_second "$engine_bench" --backbone "$backbone" --precision fp32 \
  --strategy full --optimizer sgd --batch 4 --warmup 1 --steps 1 --device cpu --channels_last
expect_refusal 1 "CUDA" "$engine_bench" --backbone "$backbone" --device cuda --check
# gpu-check's all-reduce gives --world, and each rank gets another --world after it.
expect_json allreduce_seconds "$distributed_bench" --allreduce --backbone "$backbone" \
  --device cpu --world 2 --batch 4 --size 32 --steps 2

# Flags they do not take, and values out of range.
expect_refusal 2 "--bogus" "$engine_bench" --backbone "$backbone" --bogus
expect_refusal 2 "--precision" "$engine_bench" --backbone "$backbone" --precision fp16
expect_refusal 2 "--precision" "$train_bench" train --backbone "$backbone" --data "$work/photos" \
  --precision fp16
expect_refusal 2 "--dtype" "$peak_flops" --dtype fp16
expect_refusal 2 "--backbone" "$engine_bench" --steps 1
expect_refusal 2 "--repeats" "$peak_flops" --repeats 0
expect_refusal 2 "--backbone" "$train_bench" train --data "$work/photos"
expect_refusal 2 "mode" "$train_bench" sideways --data "$work/photos"
expect_refusal 2 "--batch" "$train_bench" pipeline --data "$work/photos" --batch 0
expect_refusal 1 "--worlds" "$distributed_bench" --backbone "$backbone" --worlds
expect_refusal 1 "--size" "$distributed_bench" --backbone "$backbone" --size -1
for program in "$engine_bench" "$distributed_bench" "$peak_flops" "$train_bench"; do
  "$program" --help >"$work/help.txt" || fail "$program --help"
  grep -q -- "--threads" "$work/help.txt" || fail "$program --help names no --threads"
done
echo "every caller's command line ran"
