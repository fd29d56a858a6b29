"""Top-1 agreement of `mixed_bfloat16` / `mixed_float16` with float32, and the logits' dtype.

    .venv/bin/python benchmarks/mixed_precision.py [--model hrnet_w18_small.gluon_in1k]
        [--images 64] [--json benchmarks/results/mixed_precision.json]

Test-made weights that tell images apart: timm's model of the row (random weights, its
BatchNorm statistics and classifier fitted to the images: `reference_model.make_discriminative`),
converted. Images: random crops of scikit-image's photos through the row's own pipeline
(`load_image(..., model=name)`). Each policy builds the model in a fresh process on
`KERAS_BACKEND` and predicts the same images; agreement is the share of images whose top-1
equals float32's, with the largest logit difference relative to the largest float32 logit.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
PREDICT = """
import sys, keras, numpy as np, hrnet_keras
keras.config.set_dtype_policy(sys.argv[1])
model = hrnet_keras.create_model(sys.argv[2], weights=sys.argv[3], classifier_activation=None)
x = np.load(sys.argv[4])
logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=8, verbose=0))
np.save(sys.argv[5], logits.astype("float32"))
print(keras.backend.standardize_dtype(model(x[:1], training=False).dtype))
"""


def images(name, n):
    """`n` random crops of scikit-image's photos, through row `name`'s pipeline."""
    import skimage.data
    from PIL import Image

    from hrnet_keras import load_image, preprocess_input

    photos = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")
    root = Path(skimage.data.__file__).parent
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        with Image.open(root / photos[i % len(photos)]) as photo:
            photo = photo.convert("RGB")
            w, h = photo.size
            side = int(rng.integers(min(w, h) // 3, min(w, h)))
            left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = np.asarray(photo.crop((left, top, left + side, top + side)))
        out.append(load_image(crop, model=name))
    return preprocess_input(np.stack(out), model=name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hrnet_w18_small.gluon_in1k")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import reference_model
    import timm

    from hrnet_keras.configs import get_arch

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    with tempfile.TemporaryDirectory() as tmp:
        x = images(args.model, args.images)
        np.save(f"{tmp}/x.npy", x)
        timm_model = timm.create_model(get_arch(args.model).timm_name, pretrained=False)
        reference_model.randomize(timm_model, seed=3)
        reference_model.make_discriminative(timm_model.eval(), x)
        weights = reference_model.save_safetensors(timm_model, f"{tmp}/w.safetensors")
        logits, dtypes = {}, {}
        for policy in POLICIES:
            out = f"{tmp}/{policy}.npy"
            proc = subprocess.run(
                [sys.executable, "-c", PREDICT, policy, args.model, weights, f"{tmp}/x.npy", out],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                sys.exit(f"{policy} failed:\n{proc.stderr[-3000:]}")
            dtypes[policy] = proc.stdout.strip().splitlines()[-1]
            logits[policy] = np.load(out)
    want = logits["float32"]
    rows = []
    for policy in POLICIES:
        got = logits[policy]
        agree = float(np.mean(got.argmax(1) == want.argmax(1)))
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        row = {
            "model": args.model,
            "backend": backend,
            "policy": policy,
            "images": args.images,
            "logits_dtype": dtypes[policy],
            "top1_agreement": round(agree, 4),
            "max_rel_logit_diff": round(rel, 5),
        }
        rows.append(row)
        print(
            f"{args.model} {backend} {policy}: logits {dtypes[policy]}, top-1 agreement with "
            f"float32 {agree:.1%} of {args.images}, max |diff| {rel:.2e} of the largest logit"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
