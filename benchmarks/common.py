"""What the benchmarks share: ImageNet-like JPEGs, random-init weights files, running the CLI."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# ImageNet validation images are mostly 500x375 / 375x500 / 500x333 JPEGs (quality ~90).
SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (333, 500))
CLASSES = ("n01440764", "n02123045", "n03773504", "n07920052")
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")


QUALITIES = (75, 85, 90, 95)  # of the mixed set, in turn
GRAY_EVERY, CMYK_EVERY = 97, 211  # of the mixed set: every 97th image grayscale, 211th CMYK


def write_jpegs(dest, n, seed=0, processes=1, mixed=False):
    """`n` JPEGs at ImageNet validation sizes (quality 90) in class folders under `dest`,
    cut from scikit-image's photos, written by `processes` processes; returns `dest`.
    `mixed`: qualities 75/85/90/95 in turn, every 97th image grayscale, every 211th CMYK."""
    dest = Path(dest)
    jobs = [(dest, i, seed, mixed) for i in range(n)]
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.map(_write_jpeg, jobs, chunksize=64)
    else:
        for job in jobs:
            _write_jpeg(job)
    return dest


def _write_jpeg(job):
    import numpy as np
    import skimage.data
    from PIL import Image

    dest, i, seed, mixed = job
    path = dest / CLASSES[i % len(CLASSES)] / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
    if path.is_file():
        return
    rng = np.random.default_rng([seed, i])
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(Path(skimage.data.__file__).parent / PHOTOS[i % len(PHOTOS)]) as photo:
        photo = photo.convert("RGB")
        w, h = photo.size
        left, top = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        crop = photo.crop((left, top, left + 3 * w // 4, top + 3 * h // 4))
        image = crop.resize(SIZES[i % len(SIZES)], Image.BILINEAR)
        quality = 90
        if mixed:
            quality = QUALITIES[i % len(QUALITIES)]
            if i % GRAY_EVERY == GRAY_EVERY - 1:
                image = image.convert("L")
            elif i % CMYK_EVERY == CMYK_EVERY - 1:
                image = image.convert("CMYK")
        image.save(path, "JPEG", quality=quality)


def write_random_weights(name, weights_dir, seed=0):
    """Row `name` with seeded Keras initialisers saved as the evaluator expects it
    (WEIGHTS_DIR/<preset.keras_weights>), in a child process; returns the path."""
    from hrnet_keras.configs import get_preset

    path = Path(weights_dir) / get_preset(name).keras_weights
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        code = (
            "import keras, hrnet_keras; keras.utils.set_random_seed(%d); "
            "hrnet_keras.create_model(%r).save_weights(%r)" % (seed, name, str(path))
        )
        # On the CPU: a GPU machine's accelerator stays free for the measurement.
        env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
        env.setdefault("KERAS_BACKEND", "jax")
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return path


def run_evaluator(argv, output):
    """Run `python -m hrnet_eval ARGV --output OUTPUT` with a private local Ray cluster;
    returns (wall seconds, results.json, log text: each line after the seconds since the
    process started, as "[  12.34] line"). Exits with the log on failure."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrnet_eval", *argv, "--output", str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = [f"[{time.perf_counter() - began:8.2f}] {line.rstrip()}" for line in proc.stdout]
    returncode = proc.wait()
    wall = time.perf_counter() - began
    log = "\n".join(lines) + "\n"
    if returncode:
        sys.exit(f"python -m hrnet_eval {' '.join(argv)} failed ({returncode}):\n{log[-3000:]}")
    return wall, json.loads((Path(output) / "results.json").read_text()), log


def cpu_model():
    """The CPU's model name, e.g. "AMD EPYC" (every speed figure names it)."""
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else "unknown CPU"


def machine():
    """One line naming the machine the figures come from."""
    import platform

    return f"{platform.node() or 'unknown host'}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def code_env(code_root, **extra):
    """This process's environment for a child that runs the code of checkout `code_root`
    (its packages' sources first on PYTHONPATH), JAX on the CPU; `extra` added."""
    src = [Path(code_root) / "packages" / p / "src" for p in ("hrnet-keras", "hrnet-eval")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, src)),
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **extra,
    }


def child_row(argv, env, label):
    """Run `python ARGV` (one measurement in its own process) and return the JSON object
    it printed last; None (with its stderr shown) if it failed."""
    out = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        print(f"{label} failed ({out.returncode}):\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def write_json(path, **document):
    """Write the figures to `path` (when given) with the machine they came from."""
    if path:
        with open(path, "w") as f:
            json.dump({"machine": machine(), **document}, f, indent=1)


def sweep_parser(doc, child=("BACKEND", "MODEL", "BATCH")):
    """The options of a benchmark that times each model at each batch size, interleaved,
    one process each (`--models --batch-sizes --repeats --threads --json`, and the hidden
    `--child` that names one process's `child` triple), described by `doc`'s first
    paragraph; the script adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--models", default="hrnet-w18,hrnet-w48")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    parser.add_argument("--child", nargs=3, metavar=child, help=argparse.SUPPRESS)
    return parser
