"""Runs the GPU comparison of scripts/gpu-check: the CPU-vs-CUDA step check,
then tl's training loop (engine_bench) and the PyTorch loop (gpu_peer.py)
alternately, fp32 and bf16, and prints a Markdown table of medians and
ratios. Writes the table and every run's JSON to --out."""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run_json(command, allow_failure=False):
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 and not (allow_failure and done.stdout.strip()):
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine_bench", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))

    runs = []
    # The check's verdict is reported with the timings; a mismatch fails the
    # script at the end rather than hiding the table.
    check = run_json([args.engine_bench, "--backbone", args.backbone, "--device", "cuda",
                      "--check"], allow_failure=True)
    runs.append(check)

    if os.environ.get("TL_GPU_CHECK_ONLY"):
        print(json.dumps(check))
        raise SystemExit(0 if check["ok"] else 1)
    common = ["--batch", str(args.batch), "--warmup", str(args.warmup), "--steps",
              str(args.steps), "--device", "cuda"]
    configs = [("fp32", []), ("bf16", ["--channels_last"])]
    results = {}
    for precision, extra in configs:
        for _ in range(args.repeats):
            # Alternating keeps clock and thermal drift from favouring one side.
            tl = run_json([args.engine_bench, "--backbone", args.backbone, "--precision",
                           precision, "--strategy", "full", "--optimizer", "sgd"]
                          + common + extra)
            peer = run_json([args.python, os.path.join(here, "gpu_peer.py"), "--precision",
                             precision] + common + extra)
            runs += [tl, peer]
            results.setdefault((precision, "tl"), []).append(tl["images_per_second"])
            results.setdefault((precision, "pytorch"), []).append(peer["images_per_second"])

    med = {key: statistics.median(values) for key, values in results.items()}
    lines = [
        f"ResNet-50, 224 px, batch {args.batch}, SGD momentum, all layers training, "
        f"{args.steps} timed steps after {args.warmup} warm-up, median of {args.repeats}, "
        f"torch {peer.get('torch', '?')}",
        "",
        "| precision | tl images/s | PyTorch eager images/s | tl / PyTorch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for precision, _ in configs:
        t, p = med[(precision, "tl")], med[(precision, "pytorch")]
        lines.append(f"| {precision}{' (channels-last)' if precision == 'bf16' else ''} "
                     f"| {t:.0f} | {p:.0f} | {t / p:.2f}x |")
    lines += [
        "",
        f"bf16 / fp32 speed-up: tl {med[('bf16', 'tl')] / med[('fp32', 'tl')]:.2f}x, "
        f"PyTorch {med[('bf16', 'pytorch')] / med[('fp32', 'pytorch')]:.2f}x",
        f"CUDA step vs CPU step (float64, batch 8): loss differs by "
        f"{check['loss_relative_difference']:.1e}, the weight update by "
        f"{check['update_relative_difference']:.1e} (head "
        f"{check['head_update_relative_difference']:.1e}; worst single tensor "
        f"{check['worst_tensor']} {check['worst_tensor_update_relative_difference']:.1e}), "
        f"relative L2; {'OK' if check['ok'] else 'MISMATCH'}",
    ]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "gpu-check.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "gpu-check.json"), "w") as f:
        json.dump(runs, f, indent=2)
    if not check["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
