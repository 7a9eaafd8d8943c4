#!/usr/bin/python3
"""The PyTorch side of bench/run's CPU comparisons: the loop a practitioner writes.

torchvision's ImageFolder with Resize, CenterCrop, RandomHorizontalFlip,
ToTensor and Normalize; a DataLoader with one worker process per core; the
same TorchScript backbone file tl trains, loaded with torch.jit.load, and a
new nn.Linear head; SGD with momentum; torch.set_num_threads as tl's job.
Prints one JSON object on stdout.

  torch_peer.py train --backbone resnet18.pt --data DIR --image-size 64 --epochs 3
  torch_peer.py train --strategy feature_extraction --no-flip --epochs 10 ...
  torch_peer.py train --precision bf16 ...  # forward and loss under CPU bf16 autocast
  torch_peer.py train --device cuda ...      # on a GPU (scripts/gpu-worker-check),
                                             # batches pinned and copied asynchronously
  torch_peer.py pipeline --data DIR --image-size 224
  torch_peer.py flops --image-size 224      # ResNet-18's forward FLOPs per image

Peak memory is the sum of the resident sets of this process and its
DataLoader workers, sampled every 50 ms from /proc (also the sum of their
proportional sets, which count pages the forked workers share once).
"""

import argparse
import json
import os
import sys
import threading
import time

import torch
import torchvision
from torch import nn
from torchvision import transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _descendants(pid):
    found = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                for child in f.read().split():
                    found.append(int(child))
                    found.extend(_descendants(int(child)))
    except OSError:
        pass  # a worker that has just exited
    return found


def _memory_kb(pid):
    """(rss, pss) of one process in kilobytes, zeros once it is gone."""
    rss = pss = 0
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Peak summed memory of this process and its children, sampled in a thread."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        pids = [os.getpid()] + _descendants(os.getpid())
        rss = pss = 0
        for pid in pids:
            r, p = _memory_kb(pid)
            rss += r
            pss += p
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def _dataset(args):
    resize = max(args.image_size, args.image_size * 8 // 7)  # tl's default resize
    steps = [transforms.Resize(resize), transforms.CenterCrop(args.image_size)]
    if args.flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return torchvision.datasets.ImageFolder(args.data, transform=transforms.Compose(steps))


def _loader(dataset, args, shuffle):
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=shuffle,
                                       num_workers=args.workers,
                                       pin_memory=args.device.startswith("cuda"))


def _feature_dim(backbone_path):
    with open(os.path.splitext(backbone_path)[0] + ".json") as f:
        return json.load(f)["feature_dim"]


def run_train(args):
    start = time.perf_counter()
    dataset = _dataset(args)
    loader = _loader(dataset, args, shuffle=True)
    device = torch.device(args.device)
    backbone = torch.jit.load(args.backbone, map_location=device)
    head = nn.Linear(_feature_dim(args.backbone), len(dataset.classes)).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone = backbone.to(memory_format=memory_format)
    frozen = args.strategy == "feature_extraction"
    bf16 = args.precision == "bf16"
    if frozen:
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        trained = list(head.parameters())
    else:
        trained = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(trained, lr=args.learning_rate, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    epochs = []
    for epoch in range(1, args.epochs + 1):
        if not frozen:
            backbone.train()
        head.train()
        epoch_start = time.perf_counter()
        images = 0
        total_loss = 0.0
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            # The documented mixed-precision idiom: the forward pass and
            # the loss under autocast, backward and step outside it.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if frozen:
                    with torch.no_grad():
                        features = backbone(x)
                else:
                    features = backbone(x)
                loss = loss_fn(head(features), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * x.size(0)
            images += x.size(0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - epoch_start
        epochs.append({"epoch": epoch, "images_per_second": images / seconds,
                       "seconds": seconds, "train_loss": total_loss / images})
    return {"strategy": args.strategy, "precision": args.precision, "train_images": len(dataset), "epochs": epochs,
            "job_seconds": time.perf_counter() - start}


def run_pipeline(args):
    dataset = _dataset(args)
    start = time.perf_counter()
    images = 0
    for x, _ in _loader(dataset, args, shuffle=True):
        images += x.size(0)
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "images_per_second": images / seconds}


def forward_flops(image_size):
    """Multiply-adds of ResNet-18's convolutions and linear layer, times two."""
    model = torchvision.models.resnet18()
    total = [0]

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total[0] += (2 * output.numel() * module.in_channels * kernel // module.groups)
        elif isinstance(module, nn.Linear):
            total[0] += 2 * module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(count)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    return total[0]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["train", "pipeline", "flops"])
    parser.add_argument("--backbone")
    parser.add_argument("--data")
    parser.add_argument("--strategy", default="full", choices=["full", "feature_extraction"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--no-flip", dest="flip", action="store_false")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--channels-last", action="store_true",
                        help="images and weights in channels-last")
    args = parser.parse_args(argv)
    if args.mode == "flops":
        print(json.dumps({"image_size": args.image_size,
                          "forward_flops": forward_flops(args.image_size)}))
        return
    if not args.data or (args.mode == "train" and not args.backbone):
        parser.error("--data (and for train --backbone) is required")
    torch.set_num_threads(args.threads)
    with MemorySampler() as memory:
        result = run_train(args) if args.mode == "train" else run_pipeline(args)
    result.update({"side": "pytorch", "mode": args.mode, "image_size": args.image_size,
                   "workers": args.workers,
                   "peak_rss_mb": memory.peak_rss_kb / 1024,
                   "peak_pss_mb": memory.peak_pss_kb / 1024})
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
