"""The test image set: JPEGs cut from scikit-image's photos, labelled from the
reference model's predictions so that hit counts are known; result readers."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "color.png",
)


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """The same JPEGs in two layouts, their labels, and the reference's counts."""

    names: list  # ILSVRC2012_val_000000NN.JPEG, in image-number order
    labels: list  # class index per name
    wnids: list  # wnid per name
    class_folders: Path  # val/<wnid>/<name>
    flat: Path  # <name>, labelled by labels_file
    labels_file: Path  # one wnid per line, line k for image k
    weights_dir: Path  # NAME.weights.h5 converted from the reference checkpoints
    top5: dict  # model -> reference top-5 classes per name
    counts: dict  # model -> {"top1_hits": n, "top5_hits": n, "images": n}

    def counts_without(self, model, excluded):
        """The reference counts over all images but the names in `excluded`."""
        keep = [i for i, n in enumerate(self.names) if n not in excluded]
        return count_hits([self.top5[model][i] for i in keep], [self.labels[i] for i in keep])


def count_hits(top5, labels):
    return {
        "top1_hits": int(sum(t[0] == y for t, y in zip(top5, labels))),
        "top5_hits": int(sum(y in t for t, y in zip(top5, labels))),
        "images": len(labels),
    }


def write_photos(dest, n, seed=0):
    """`n` JPEGs cut from scikit-image's photos: random crops, sizes and aspect ratios."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    source = Path(skimage.data.__file__).parent
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        with Image.open(source / PHOTOS[i % len(PHOTOS)]) as photo:
            photo = photo.convert("RGB")
            w, h = photo.size
            cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            size = (int(rng.integers(160, 420)), int(rng.integers(160, 420)))
            image = photo.crop((left, top, left + cw, top + ch)).resize(size, Image.BILINEAR)
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        image.save(dest / name, "JPEG", quality=90)
        names.append(name)
    return names


def choose_labels(logits, seed=0, margin=1e-3):
    """Labels that give known hits, robust to 1e-5 differences between frameworks: a third
    the reference's top-1 (when it leads by `margin`), a third its 3rd class (a top-5 hit
    only), the rest a class outside its top-10."""
    rng = np.random.default_rng(seed)
    labels = []
    for i, row in enumerate(np.asarray(logits)):
        order = np.argsort(-row, kind="stable")
        if i % 3 == 0 and row[order[0]] - row[order[1]] > margin:
            labels.append(int(order[0]))
        elif i % 3 in (0, 1):
            labels.append(int(order[2]))
        else:
            labels.append(int(rng.choice(order[10:])))
    return labels


def read_results(output):
    """results.json of a run, its rows by name."""
    document = json.loads((Path(output) / "results.json").read_text())
    return document, {row["name"]: row for row in document["models"]}


def shard_files(output, model):
    return sorted((Path(output) / "shards" / model).glob("*.json"))


def assert_predictions(output, image_set, model, excluded=()):
    """Every image's (but the names in `excluded`) top-1 and top-5 classes in the shard files
    equal the reference's."""
    seen = {}
    for path in shard_files(output, model):
        record = json.loads(path.read_text())
        for name, top5 in zip(record["names"], record["top5_classes"]):
            seen[os.path.basename(name)] = top5
    assert sorted(seen) == [n for n in image_set.names if n not in excluded]
    for name, expected in zip(image_set.names, image_set.top5[model]):
        if name not in excluded:
            assert (seen[name][0], set(seen[name])) == (expected[0], set(expected)), name


def assert_counts(output, image_set, models):
    _, rows = read_results(output)
    for model in models:
        row = rows[model]
        expected = image_set.counts[model]
        assert (row["top1_hits"], row["top5_hits"], row["images"]) == (
            expected["top1_hits"],
            expected["top5_hits"],
            expected["images"],
        ), model
    return rows
