"""The two transfer tasks scripts/results and scripts/recipe_study.py measure,
as image folders made from data that Debian packages ship:

  fashion: smallcnn pretrained on Fashion-MNIST classes 0-4 (T-shirt,
           Trouser, Pullover, Dress, Coat), transferred to classes 5-9
           (Sandal, Shirt, Sneaker, Bag, Ankle boot); dataset-fashion-mnist.
  digits:  smallcnn pretrained on all ten Fashion-MNIST classes, transferred
           to scikit-learn's 8x8 handwritten digits (python3-sklearn): a
           different source and a different target.

Seed s of a size n trains on the s-th disjoint block of n images per class,
so seeds differ in their images as well as in their initialisation.
"""
import gzip
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")
DIGITS = pathlib.Path("/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz")
# The digits' test set: the last images of each class (about 180 per class in all).
DIGITS_TEST_PER_CLASS = 80


def fashion_folder(idx_to_folder: pathlib.Path, data: pathlib.Path, split: str, out: str,
                   classes: str, *extra: str):
    """Fashion-MNIST's `split` ("train" or "t10k") images of `classes` as
    data/out/<class name>/*.png; skipped when the folder exists."""
    if (data / out).exists():
        return
    # Written beside and renamed: an interrupted run leaves no folder that
    # looks finished.
    partial = data / (out + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([str(idx_to_folder),
                    "--images", str(FASHION / f"{split}-images-idx3-ubyte.gz"),
                    "--labels", str(FASHION / f"{split}-labels-idx1-ubyte.gz"), "--fashion-names",
                    "--out", str(partial), "--classes", classes, *extra],
                   check=True, stdout=subprocess.DEVNULL)
    partial.rename(data / out)


def fashion_shots(idx_to_folder, data, out: str, size: int, seed: int):
    """Seed `seed`'s block of `size` training images of each of classes 5-9."""
    fashion_folder(idx_to_folder, data, "train", out, "5,6,7,8,9", "--per-class", str(size),
                   "--skip-per-class", str(size * (seed - 1)))


def write_digits(data: pathlib.Path, sizes, seeds, test_folder="digits-test",
                 shots_folder="digits-{size}-seed-{seed}"):
    """scikit-learn's digits as PNG folders: the last DIGITS_TEST_PER_CLASS
    images of each class go to `test_folder`; seed s of size n trains on the
    s-th block of n of the others. Folders that exist are left alone."""
    from PIL import Image
    if not DIGITS.exists():
        raise SystemExit(f"{DIGITS} is missing: install python3-sklearn")
    by_class = {}
    with gzip.open(DIGITS, "rt") as rows:
        for row in rows:
            values = [int(v) for v in row.split(",")]
            by_class.setdefault(values[64], []).append(values[:64])

    def save(folder, label, index, pixels):
        out = data / folder / f"digit-{label}"
        out.mkdir(parents=True, exist_ok=True)
        image = Image.new("L", (8, 8))
        image.putdata([round(v * 255 / 16) for v in pixels])
        image.save(out / f"{index:04d}.png")

    folders = {test_folder: None}
    for size in sizes:
        for seed in seeds:
            folders[shots_folder.format(size=size, seed=seed)] = (size, seed)
    for folder, shape in folders.items():
        if (data / folder).exists():
            continue
        partial = folder + ".partial"  # renamed once whole, as fashion_folder's
        shutil.rmtree(data / partial, ignore_errors=True)
        for label, images in sorted(by_class.items()):
            train, test = images[:-DIGITS_TEST_PER_CLASS], images[-DIGITS_TEST_PER_CLASS:]
            if shape is None:
                block = test
            else:
                size, seed = shape
                block = train[size * (seed - 1): size * seed]
                if len(block) < size:
                    raise SystemExit(f"digits: class {label} has {len(train)} training images, "
                                     f"too few for {size} per class at seed {seed}")
            for i, pixels in enumerate(block):
                save(partial, label, i, pixels)
        (data / partial).rename(data / folder)


def digits_train_per_class() -> int:
    """Training images of the digit class that has the fewest (the rest of
    each class is its test set)."""
    counts = {}
    with gzip.open(DIGITS, "rt") as rows:
        for row in rows:
            label = row.rsplit(",", 1)[1].strip()
            counts[label] = counts.get(label, 0) + 1
    return min(counts.values()) - DIGITS_TEST_PER_CLASS


def export_smallcnn(out: pathlib.Path, seed: int):
    """A randomly initialised smallcnn (tools/export_backbone.py) seeded by `seed`."""
    if out.exists():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "export_backbone.py"), "--arch",
                    "smallcnn", "--out", str(out), "--seed", str(seed)],
                   check=True, stdout=subprocess.DEVNULL)
