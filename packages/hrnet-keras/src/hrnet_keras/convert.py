"""Convert published HRNet PyTorch checkpoints into Keras weights.

    python -m hrnet_keras.convert SRC [--model hrnet-w18] --out DIR [--keras]
    python -m hrnet_keras.convert hf://timm/hrnet_w18.ms_aug_in1k [--out DIR]
    python -m hrnet_keras.convert --download hrnet-w18 hrnet_w18_small.gluon_in1k [--out DIR]
    python -m hrnet_keras.convert --all [--out DIR]

SRC is a local .pth/.safetensors file (without --model: the row its published name
gives, else the architecture its tensors' shapes fit), a URL (a sha256 prefix in the file
name, `...-0c10b180.pth`, is checked) or a Hugging Face Hub name
`hf://OWNER/NAME[@REVISION]` (its config.json gives the architecture; through
huggingface_hub's cache, HF_HUB_OFFLINE honoured). `--all` is the
mmclassification table; `--download` takes any row. A file bearing one of the table's
published names is checked against its sha256 prefix wherever it comes from.
Writes NAME.weights.h5 (recording the source's sha256), and with --keras also
a self-contained NAME.keras. $HRNET_KERAS_MIRROR replaces the download host
(same file names). Checkpoints are read without running pickled code.
"""

import argparse
import sys
from pathlib import Path

from hrnet_keras.checkpoints import CheckpointError, DownloadError, cache_dir, is_hub_handle
from hrnet_keras.checkpoints.identify import infer_row
from hrnet_keras.checkpoints.conversion import convert_row, convert_source
from hrnet_keras.configs import PRESETS, get_preset, list_models


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m hrnet_keras.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Rows: " + ", ".join(PRESETS),
    )
    parser.add_argument(
        "src", nargs="?", help="a .pth/.safetensors file, a URL or hf://OWNER/NAME[@REVISION]"
    )
    parser.add_argument(
        "--model", help="row or architecture of SRC, e.g. hrnet-w18 (files, hf:// names: optional)"
    )
    parser.add_argument(
        "--download", nargs="+", metavar="NAME", help="download and convert these rows"
    )
    parser.add_argument(
        "--all", action="store_true", help="download and convert every row of the mmcls table"
    )
    parser.add_argument(
        "--out", default=None, help=f"output folder (default: the cache, {cache_dir()})"
    )
    parser.add_argument(
        "--keras",
        action="store_true",
        help="also write NAME.keras (Keras holds it in memory while writing)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out_dir = Path(args.out) if args.out else cache_dir()
    options = {"keras_model": args.keras, "progress": not args.no_progress}
    rows = list_models("mmcls") if args.all else (args.download or [])
    if bool(args.src) == bool(rows):
        parser.error("give either SRC --model NAME, or --download NAME ..., or --all")
    try:
        if args.src:
            if not args.model and "://" in args.src and not is_hub_handle(args.src):
                parser.error("a URL needs --model NAME (one of: " + ", ".join(PRESETS) + ")")
            if not args.model and not is_hub_handle(args.src):
                args.model, how = infer_row(args.src)
                print(f"{args.src}: --model {args.model} (from {how})", file=sys.stderr)
            if args.model:
                get_preset(args.model)
            outputs = [convert_source(args.src, args.model, out_dir, **options)]
        else:
            for name in rows:
                get_preset(name)
            outputs = [convert_row(name, out_dir, **options) for name in rows]
    except (CheckpointError, DownloadError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for written in outputs:
        print("wrote " + " and ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
