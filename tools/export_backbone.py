#!/usr/bin/python3
"""Exports an image backbone as TorchScript plus its tl.backbone.v1 manifest.

The backbone maps a float NCHW batch to flattened [N, feature_dim] features;
the manifest (same path, .json) tells the engine its input size, normalization
and the layer groups that fine-tuning unfreezes from the last.

Runs with Debian's interpreter (/usr/bin/python3, PyTorch 1.13 and
torchvision 0.14) and with PyTorch 2.x / torchvision 0.2x: it uses only APIs
present in both.

  /usr/bin/python3 tools/export_backbone.py --arch resnet18 --out backbones/resnet18.pt
  /usr/bin/python3 tools/export_backbone.py --arch resnet18 --weights resnet18-f37072fd.pth \\
      --out backbones/resnet18_imagenet.pt
"""

import argparse
import json
import os
import sys

import torch
from torch import nn

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MANIFEST_FORMAT = "tl.backbone.v1"


class SmallCnn(nn.Module):
    """A small network of our own for 28-64 px images (Fashion-MNIST and alike).

    Three stages of two conv3x3-BN-ReLU at widths 16, 32 and 64, max-pooling
    between stages and global average pooling at the end. The first conv is the
    "stem" group so that fine-tuning can leave it frozen alone. At 32x32 one
    forward pass costs about 9.9 million multiply-adds.
    """

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        first, second, third = widths
        self.stem = _conv_bn_relu(3, first)
        self.stage1 = _conv_bn_relu(first, first)
        self.stage2 = nn.Sequential(
            nn.MaxPool2d(2), _conv_bn_relu(first, second), _conv_bn_relu(second, second))
        self.stage3 = nn.Sequential(
            nn.MaxPool2d(2), _conv_bn_relu(second, third), _conv_bn_relu(third, third))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = third
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He initialization suits ReLU nets trained from scratch better than
                # PyTorch's default uniform one.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        return torch.flatten(self.pool(x), 1)


def _conv_bn_relu(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True))


def _torchvision_model(name):
    import torchvision  # only the torchvision architectures need it
    # weights=None (not the older pretrained=False) is accepted from
    # torchvision 0.13 on and is the only spelling that 0.2x keeps.
    return getattr(torchvision.models, name)(weights=None), torchvision.__version__


def _resnet(name, feature_dim):
    def build():
        model, version = _torchvision_model(name)
        model.fc = nn.Identity()
        groups = [("stem", ["conv1", "bn1"])] + [
            ("layer%d" % i, ["layer%d" % i]) for i in range(1, 5)]
        return model, groups, "torchvision %s %s" % (name, version)
    return {"build": build, "feature_dim": feature_dim, "input_size": 224,
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "head_prefixes": ["fc."]}


def _mobilenet_like(name, blocks, feature_dim):
    """MobileNet-V3 and EfficientNet: forward() runs features, avgpool,
    flatten, classifier; with the classifier gone it returns the pooled
    features of the last conv. `blocks` groups the indices of `features`."""
    def build():
        model, version = _torchvision_model(name)
        model.classifier = nn.Identity()
        groups = [(group, ["features.%d" % i for i in indices]) for group, indices in blocks]
        return model, groups, "torchvision %s %s" % (name, version)
    return {"build": build, "feature_dim": feature_dim, "input_size": 224,
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "head_prefixes": ["classifier."]}


def _build_vgg16():
    model, version = _torchvision_model("vgg16")
    # The classic transfer features: the 4096 activations of the second fully
    # connected layer (fc7), ReLU and dropout included; only the 1000-way
    # layer goes.
    model.classifier[6] = nn.Identity()
    # Conv layers between max-pools; ReLU and pooling hold no parameters.
    blocks = [("block1", [0, 2]), ("block2", [5, 7]), ("block3", [10, 12, 14]),
              ("block4", [17, 19, 21]), ("block5", [24, 26, 28])]
    groups = [(name, ["features.%d" % i for i in indices]) for name, indices in blocks]
    groups.append(("fc", ["classifier.0", "classifier.3"]))
    return model, groups, "torchvision vgg16 %s" % version


def _build_inception_v3():
    import torchvision

    class InceptionV3Features(torchvision.models.Inception3):
        # Scripted, Inception3.forward returns a (logits, aux) tuple even
        # without the auxiliary head; the engine needs a plain tensor.
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._forward(x)[0]

    # No auxiliary head: it only serves ImageNet training. init_weights is
    # given because torchvision warns when it is left to its default, and
    # the truncated-normal initialization it selects exists in 0.14 and 0.2x.
    # transform_input stays off: the manifest's mean/std of 0.5 normalizes the
    # way torchvision's transform_input=True does for its ImageNet weights.
    model = InceptionV3Features(aux_logits=False, init_weights=True)
    model.fc = nn.Identity()
    stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    groups = [("stem", stem),                                              # to 35x35
              ("mixed5", ["Mixed_5b", "Mixed_5c", "Mixed_5d"]),            # 35x35
              ("mixed6", ["Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]),  # 17x17
              ("mixed7", ["Mixed_7a", "Mixed_7b", "Mixed_7c"])]            # 8x8
    return model, groups, ("torchvision inception_v3 %s (no auxiliary head; inputs of "
                           "at least 75 px)" % torchvision.__version__)


def _build_smallcnn():
    model = SmallCnn()
    groups = [(name, [name]) for name in ("stem", "stage1", "stage2", "stage3")]
    return model, groups, ("tl smallcnn (tools/export_backbone.py); expects 3 channels "
                           "(replicate grayscale) normalized with mean 0.5, std 0.5")


ARCHITECTURES = {
    "resnet18": _resnet("resnet18", 512),
    "resnet50": _resnet("resnet50", 2048),
    "vgg16": {
        "build": _build_vgg16, "feature_dim": 4096, "input_size": 224,
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "head_prefixes": ["classifier.6."]},
    "inception_v3": {
        "build": _build_inception_v3, "feature_dim": 2048, "input_size": 299,
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
        "head_prefixes": ["fc.", "AuxLogits."]},
    "efficientnet_b0": _mobilenet_like("efficientnet_b0", [
        ("stem", [0]),             # conv 3->32, stride 2
        ("blocks1", [1, 2]),       # 16, 24 channels, 1/4 resolution
        ("blocks2", [3]),          # 40 channels, 1/8
        ("blocks3", [4, 5]),       # 80, 112 channels, 1/16
        ("blocks4", [6, 7]),       # 192, 320 channels, 1/32
        ("head_conv", [8]),        # 1x1 conv to 1280
    ], 1280),
    "mobilenet_v3_small": _mobilenet_like("mobilenet_v3_small", [
        ("stem", [0]),             # conv 3->16, stride 2
        ("blocks1", [1, 2, 3]),    # to 24 channels, 1/8 resolution
        ("blocks2", [4, 5, 6]),    # 40 channels, 1/16
        ("blocks3", [7, 8]),       # 48 channels
        ("blocks4", [9, 10, 11]),  # 96 channels, 1/32
        ("head_conv", [12]),       # 1x1 conv to 576
    ], 576),
    "mobilenet_v3_large": _mobilenet_like("mobilenet_v3_large", [
        ("stem", [0]),             # conv 3->16, stride 2
        ("blocks1", [1, 2, 3]),    # to 24 channels, 1/4 resolution
        ("blocks2", [4, 5, 6]),    # 40 channels, 1/8
        ("blocks3", [7, 8, 9, 10]),  # 80 channels, 1/16
        ("blocks4", [11, 12]),     # 112 channels
        ("blocks5", [13, 14, 15]), # 160 channels, 1/32
        ("head_conv", [16]),       # 1x1 conv to 960
    ], 960),
    "smallcnn": {
        "build": _build_smallcnn, "feature_dim": 64, "input_size": 32,
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "head_prefixes": []},
}


def _read_state_dict(path):
    # Plain tensor dicts load under PyTorch 2.x's weights_only default too.
    state = torch.load(path, map_location="cpu")
    for wrapper_key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
    if not isinstance(state, dict):
        raise SystemExit("%s: expected a state_dict (a dict of tensors), got %s"
                         % (path, type(state).__name__))
    # Checkpoints saved from nn.DataParallel prefix every key.
    return {(key[len("module."):] if key.startswith("module.") else key): value
            for key, value in state.items()}


def _load_weights(model, path, head_prefixes):
    state = _read_state_dict(path)
    # The classifier is replaced by Identity, so its weights have no home.
    state = {key: value for key, value in state.items()
             if not any(key.startswith(prefix) for prefix in head_prefixes)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that do not match this architecture
        lines = str(error).splitlines()
        raise SystemExit("%s does not fit this architecture:\n%s%s" % (
            path, "\n".join(lines[1:6]), "\n\t..." if len(lines) > 6 else ""))
    if result.missing_keys or result.unexpected_keys:
        raise SystemExit("%s does not fit this architecture: missing %s, unexpected %s"
                         % (path, result.missing_keys[:5], result.unexpected_keys[:5]))


def _check_layer_groups(model, groups):
    """Every parameter must lie in exactly one group, or some layers could never
    be unfrozen (or would be unfrozen twice)."""
    module_names = dict(model.named_modules())
    for group_name, modules in groups:
        for module in modules:
            assert module in module_names, "group %s names missing module %s" % (group_name, module)
    owners = {}
    for parameter_name, _ in model.named_parameters():
        owners[parameter_name] = [
            group_name for group_name, modules in groups
            for module in modules if parameter_name.startswith(module + ".")]
    unowned = [name for name, found in owners.items() if not found]
    shared = [name for name, found in owners.items() if len(found) > 1]
    assert not unowned, "parameters outside every layer group: %s" % unowned[:5]
    assert not shared, "parameters in several layer groups: %s" % shared[:5]


def _check_features(module, probe, feature_dim, what):
    with torch.no_grad():
        features = module(probe)
    assert tuple(features.shape) == (2, feature_dim), (
        "%s gives features of shape %s, expected (2, %d)"
        % (what, tuple(features.shape), feature_dim))
    return features


def _manifest_path(backbone_path):
    stem, extension = os.path.splitext(backbone_path)
    return (stem if extension else backbone_path) + ".json"


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument("--out", required=True, help="TorchScript file to write (x.pt)")
    parser.add_argument("--weights", help="state_dict file of pretrained weights; "
                        "without it the weights are random (see --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--input-size", type=int, help="side of the square input the "
                        "backbone is trained at (default: the architecture's)")
    return parser.parse_args(argv)


def main(argv):
    args = _parse_args(argv)
    spec = ARCHITECTURES[args.arch]
    input_size = args.input_size or spec["input_size"]
    if input_size < 16:
        raise SystemExit("--input-size must be at least 16, got %d" % input_size)

    torch.manual_seed(args.seed)
    model, groups, source = spec["build"]()
    if args.weights:
        _load_weights(model, args.weights, spec["head_prefixes"])
        source += ", weights from %s" % os.path.basename(args.weights)
    else:
        source += ", random weights (seed %d)" % args.seed
    # Eval mode: the check below must not move BatchNorm's running statistics.
    model.eval()
    _check_layer_groups(model, groups)
    probe = torch.randn(2, 3, input_size, input_size)
    expected = _check_features(model, probe, spec["feature_dim"], args.arch)

    scripted = torch.jit.script(model)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    scripted.save(args.out)
    reloaded = torch.jit.load(args.out, map_location="cpu")
    actual = _check_features(reloaded, probe, spec["feature_dim"], args.out)
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-5), "TorchScript output differs"

    manifest = {
        "format": MANIFEST_FORMAT,
        "architecture": args.arch,
        "feature_dim": spec["feature_dim"],
        "input_size": input_size,
        "mean": spec["mean"],
        "std": spec["std"],
        "layer_groups": [{"name": name, "modules": modules} for name, modules in groups],
        "source": source,
    }
    manifest_path = _manifest_path(args.out)
    with open(manifest_path, "w") as out:
        json.dump(manifest, out, indent=2)
        out.write("\n")
    parameters = sum(p.numel() for p in model.parameters())
    print("wrote %s (%s, %d parameters, %d features at %d px, %d layer groups) and %s"
          % (args.out, args.arch, parameters, spec["feature_dim"], input_size, len(groups),
             manifest_path))


if __name__ == "__main__":
    main(sys.argv[1:])
