"""Convert published HRNet PyTorch checkpoints into Keras weights.

    python -m hrnet_keras.convert SRC --model hrnet-w18 --out DIR
    python -m hrnet_keras.convert --download hrnet-w18 hrnet-w48-ssld [--out DIR]
    python -m hrnet_keras.convert --all [--out DIR]

SRC is a local .pth/.safetensors file or a URL (a sha256 prefix in the file
name, `...-0c10b180.pth`, is checked). Writes NAME.weights.h5 and NAME.keras.
$HRNET_KERAS_MIRROR replaces the download host (same file names).
Checkpoints are read without running pickled code.
"""

import argparse
import sys
import urllib.parse
from pathlib import Path

from hrnet_keras.checkpoints import (
    CheckpointError,
    DownloadError,
    cache_dir,
    convert_checkpoint,
    download,
    fetch_checkpoint,
)
from hrnet_keras.checkpoints.download import hash_prefix_from_name
from hrnet_keras.configs import PRESETS, get_preset


def _fetch(url, out_dir, sha256_prefix=None, progress=True):
    name = Path(urllib.parse.urlparse(url).path).name
    prefix = sha256_prefix or hash_prefix_from_name(name)
    return download(url, Path(out_dir) / name, sha256_prefix=prefix, progress=progress)


def convert_source(src, name, out_dir, progress=True):
    """Convert a file or URL for row `name`; URLs are downloaded into `out_dir` first."""
    if "://" in src:
        src = _fetch(src, out_dir, progress=progress)
    return convert_checkpoint(src, name, out_dir)


def convert_row(name, out_dir, progress=True):
    """Download the published checkpoint of `name` (unless cached) and convert it."""
    checkpoint = fetch_checkpoint(name, cache=out_dir, progress=progress)
    return convert_checkpoint(checkpoint, name, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m hrnet_keras.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Rows: " + ", ".join(PRESETS),
    )
    parser.add_argument("src", nargs="?", help="a .pth/.safetensors file or a URL")
    parser.add_argument("--model", help="row name of SRC, e.g. hrnet-w18")
    parser.add_argument(
        "--download", nargs="+", metavar="NAME", help="download and convert these rows"
    )
    parser.add_argument("--all", action="store_true", help="download and convert every row")
    parser.add_argument(
        "--out", default=None, help=f"output folder (default: the cache, {cache_dir()})"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out_dir = Path(args.out) if args.out else cache_dir()
    progress = not args.no_progress
    rows = list(PRESETS) if args.all else (args.download or [])
    if bool(args.src) == bool(rows):
        parser.error("give either SRC --model NAME, or --download NAME ..., or --all")
    try:
        if args.src:
            if not args.model:
                parser.error("SRC needs --model NAME (one of: " + ", ".join(PRESETS) + ")")
            get_preset(args.model)
            outputs = [convert_source(args.src, args.model, out_dir, progress)]
        else:
            for name in rows:
                get_preset(name)
            outputs = [convert_row(name, out_dir, progress) for name in rows]
    except (CheckpointError, DownloadError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for weights, model in outputs:
        print(f"wrote {weights} and {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
