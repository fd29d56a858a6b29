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
import urllib.parse
from pathlib import Path

from hrnet_keras import network
from hrnet_keras.checkpoints import (
    CheckpointError,
    DownloadError,
    cache_dir,
    download,
    fetch_checkpoint,
    is_hub_handle,
    load_checkpoint_into,
)
from hrnet_keras.checkpoints.architecture import infer_row
from hrnet_keras.checkpoints.checksums import record_source
from hrnet_keras.configs import (
    PRESETS,
    convert_command,
    get_preset,
    hash_prefix_from_name,
    list_models,
)
from hrnet_keras.files import atomic_write


def convert_checkpoint(src, name, out_dir, *, keras_model=False, out_name=None):
    """Convert `src` (a .pth/.safetensors file) for row `name` into `out_dir`.

    Builds the 1000-class classifier (softmax head, as keras.applications),
    loads `src` into it and writes `<out_name>.weights.h5` (default: the row's
    name) with the source's file name and sha256 in its HDF5 attributes; with
    `keras_model`, also a self-contained `<out_name>.keras`. Returns the paths written.
    """
    stem = out_name or get_preset(name).name
    out_dir = Path(out_dir)
    model = network.classifier(name, classifier_activation="softmax")
    loaded = load_checkpoint_into(model, src, name)
    written = [out_dir / f"{stem}.weights.h5"]
    with atomic_write(written[0]) as tmp:
        model.save_weights(tmp)
        record_source(tmp, loaded.path, loaded.sha256)
    if keras_model:
        written.append(out_dir / f"{stem}.keras")
        with atomic_write(written[1]) as tmp:
            model.save(tmp)
    return written


def ensure_converted(name, *, cache=None, allow_download=True, progress=True):
    """Path of row `name`'s `.weights.h5` in the cache, converting on first use.

    Uses the converted file if present, else the cached `.pth` (sha256-checked),
    else downloads the published checkpoint when `allow_download`.
    """
    preset = get_preset(name)
    cache = Path(cache) if cache else cache_dir()
    converted = cache / preset.keras_weights
    if converted.is_file():
        return converted
    if is_hub_handle(preset.url):
        checkpoint = fetch_checkpoint(name, local_only=not allow_download)
        convert_checkpoint(checkpoint, name, cache)
        return converted
    if not allow_download and not (cache / preset.filename).is_file():
        raise FileNotFoundError(
            f"No weights for {name} in {cache} (neither {preset.keras_weights} nor "
            f"{preset.filename}). Get them with: {convert_command(name, cache)}"
        )
    convert_checkpoint(fetch_checkpoint(name, cache=cache, progress=progress), name, cache)
    return converted


def _fetch(url, out_dir, progress=True):
    name = Path(urllib.parse.urlparse(url).path).name
    prefix = hash_prefix_from_name(name)
    return download(url, Path(out_dir) / name, sha256_prefix=prefix, progress=progress)


def convert_hub(handle, name, out_dir, *, keras_model=False):
    """Convert `hf://OWNER/NAME[@REVISION]`; `name` None: the architecture its config.json gives.

    Written as the row's files when the handle is a row's URL, else as `<NAME>.weights.h5`.
    """
    from hrnet_keras.checkpoints import hub

    fetched = hub.fetch(handle, arch=None if name is None else get_preset(name).arch)
    rows = [p.name for p in PRESETS.values() if p.url == handle.split("@")[0]]
    out_name = rows[0] if rows else fetched.repo_id.rsplit("/", 1)[-1]
    return convert_checkpoint(
        fetched.path, name or fetched.arch, out_dir, keras_model=keras_model, out_name=out_name
    )


def convert_source(src, name, out_dir, *, keras_model=False, progress=True):
    """Convert a file, URL or hub name for row `name`; URLs are downloaded into `out_dir` first."""
    if is_hub_handle(src):
        return convert_hub(src, name, out_dir, keras_model=keras_model)
    if "://" in src:
        src = _fetch(src, out_dir, progress=progress)
    return convert_checkpoint(src, name, out_dir, keras_model=keras_model)


def convert_row(name, out_dir, *, keras_model=False, progress=True):
    """Download the published checkpoint of `name` (unless there) and convert it."""
    checkpoint = fetch_checkpoint(name, cache=out_dir, progress=progress)
    return convert_checkpoint(checkpoint, name, out_dir, keras_model=keras_model)


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
