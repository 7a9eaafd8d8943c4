"""The PyTorch loop a practitioner writes, timed the way engine_bench times
tl: the same network (torchvision, classifier replaced by a new linear head),
the same optimizer and learning rates, the same synthetic pinned batches,
loss and accuracy read back every step. Eager mode, no torch.compile.

Prints one JSON object, like engine_bench."""
import argparse
import json
import time

import torch
import torchvision


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args()

    torch.manual_seed(1)
    device = torch.device(args.device)
    backbone = getattr(torchvision.models, args.arch)(weights=None)
    feature_dim = backbone.fc.in_features
    backbone.fc = torch.nn.Identity()
    head = torch.nn.Linear(feature_dim, args.classes)
    backbone.to(device)
    head.to(device)
    if args.channels_last:
        backbone.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        [{"params": head.parameters(), "lr": 0.01},
         {"params": backbone.parameters(), "lr": 0.001}],
        lr=0.01, momentum=0.9)

    images = args.batch * (args.warmup + args.steps)
    data = torch.randn(images, 3, args.image_size, args.image_size).pin_memory()
    labels = torch.randint(0, args.classes, (images,)).pin_memory()

    backbone.train()
    head.train()
    measured_start = None
    loss_value = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            measured_start = time.perf_counter()
        x = data[step * args.batch:(step + 1) * args.batch].to(device, non_blocking=True)
        y = labels[step * args.batch:(step + 1) * args.batch].to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                            enabled=args.precision == "bf16"):
            logits = head(torch.flatten(backbone(x), 1))
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        _correct = (logits.argmax(1) == y).sum().item()
    seconds = time.perf_counter() - measured_start
    print(json.dumps({
        "tool": "pytorch", "device": args.device, "precision": args.precision,
        "channels_last": args.channels_last, "batch": args.batch,
        "image_size": args.image_size, "steps": args.steps,
        "images_per_second": args.steps * args.batch / seconds,
        "step_ms": 1000 * seconds / args.steps, "final_loss": loss_value,
        "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
