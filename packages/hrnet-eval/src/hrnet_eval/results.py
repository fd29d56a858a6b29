"""Merge shard records into rows; write results.md, results.json and results.csv.

`seconds` of a row is worker time: the sum over its shards of the time a
worker spent on the shard's images (model loading and compiling excluded), so
`images_per_second` is the throughput of one worker on its share.

A row whose weights are not the row's published checkpoint (converted from
another file, converted before sources were recorded, or random) says
"unpublished weights" in every file and in the log, with the source's sha256
when the weights record it.
"""

import csv
import io
import json
from pathlib import Path

from hrnet_keras.configs import convert_command, get_preset
from hrnet_keras.files import atomic_write

from hrnet_eval.plot import write_plot
from hrnet_eval.spec import label

CONFIG_URL = "https://github.com/open-mmlab/mmclassification/blob/master/configs/hrnet/{}"
HUB_URL = "https://huggingface.co/{}"  # a timm row's page, from its hf:// handle
CSV_COLUMNS = (
    "model",
    "img_size",
    "top1",
    "top1_err",
    "top5",
    "top5_err",
    "param_count",
    "crop_pct",
    "interpolation",
    "weights",
    "source_sha256",
)


def merge(records):
    """Sum the counts of a model's shard records."""
    total = {"images": 0, "top1_hits": 0, "top5_hits": 0, "seconds": 0.0, "skipped": []}
    for record in sorted(records, key=lambda r: r["start"]):
        total["images"] += record["images"]
        total["top1_hits"] += record["top1_hits"]
        total["top5_hits"] += record["top5_hits"]
        total["seconds"] += record["seconds"]
        total["skipped"].extend(record["skipped"])
    return total


def make_row(name, records, *, backend, spec, failed=None):
    """One row of results.json: measured figures beside the published ones.

    `spec` is the row's `ModelSpec`: which weights, and whether they are the
    row's published checkpoint. `failed`: why the row stopped before its last
    shard; it then has no accuracy (its counts cover what was scored).
    """
    preset = spec.preset
    pipeline = preset.pipeline
    total = merge(records)
    images = total["images"]
    counted = images and not failed
    pct = (lambda hits: round(100.0 * hits / images, 4)) if counted else (lambda hits: None)
    return {
        "name": name,
        "top1": pct(total["top1_hits"]),
        "top5": pct(total["top5_hits"]),
        "images": images,
        "top1_hits": total["top1_hits"],
        "top5_hits": total["top5_hits"],
        "skipped": total["skipped"],
        "published_top1": preset.top1,
        "published_top5": preset.top5,
        "params": preset.params,
        "flops": preset.flops,
        "family": preset.family,
        "pipeline": pipeline.describe(),
        "img_size": pipeline.crop,
        "crop_pct": pipeline.crop_pct,
        "interpolation": pipeline.interpolation,
        "backend": backend,
        "weights": spec.weights or spec.key,
        "published_weights": spec.published,
        "source_sha256": spec.source_sha256,
        "seconds": round(total["seconds"], 3),
        "images_per_second": round(images / total["seconds"], 2) if total["seconds"] else None,
        "failed": failed,
        "worker_peak_rss_mib": max(
            filter(None, (r.get("worker", {}).get("peak_rss_mib") for r in records)), default=None
        ),
    }


def weights_note(row):
    """None for the row's published weights, else what the weights are instead."""
    if row["published_weights"]:
        return None
    if row["source_sha256"]:
        return f"unpublished weights, source sha256 {row['source_sha256']}"
    if row["weights"].endswith(".weights.h5"):
        return "unpublished weights, source not recorded"
    return f"unpublished weights, random init ({row['weights']})"


def display_name(name):
    """The table's cell: `label`, with \\* (converted from the official repo) on its rows."""
    return label(name) + ("\\*" if get_preset(name).family == "mmcls" else "")


def _diff(measured, published):
    return "" if measured is None else f"{measured - published:+.2f}"


def _num(value):
    return "n/a" if value is None else f"{value:.2f}"


def markdown(rows, meta):
    """The seed's table with measured Top-1/Top-5 and the difference beside the published."""
    out = []
    if meta.get("banner"):
        out += ["```", meta["banner"], "```", ""]
    out += [
        "# HRNet on ImageNet-1k: measured vs published",
        "",
        f"Data: `{meta['data']}` ({meta['layout']}), {meta['images']} images. "
        f"Backend: {meta['backend']}. Pipeline: each row's test pipeline, center crop / "
        "resized short edge and interpolation; published figures at the same pipeline.",
        "",
        "| Model | Params(M) | Flops(G) | Pipeline | Top-1 (%) | Top-1 measured | Top-1 diff "
        "| Top-5 (%) | Top-5 measured | Top-5 diff | Images | Config | Download |",
        "|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|",
    ]
    for row in rows:
        preset = get_preset(row["name"])
        model = display_name(row["name"])
        if weights_note(row):
            model += " (**unpublished weights**)"
        out.append(
            f"| {model} | {row['params'] / 1e6:.2f} | {row['flops'] / 1e9:.2f} "
            f"| {row['pipeline']} | {row['published_top1']:.2f} | {_num(row['top1'])} "
            f"| {_diff(row['top1'], row['published_top1'])} "
            f"| {row['published_top5']:.2f} | {_num(row['top5'])} "
            f"| {_diff(row['top5'], row['published_top5'])} | {row['images']} "
            f"| {_links(preset)} |"
        )
    out += [
        "",
        "*Models with \\* are converted from the [official repo]"
        "(https://github.com/HRNet/HRNet-Image-Classification).*",
    ]
    unpublished = [(row, weights_note(row)) for row in rows if weights_note(row)]
    if unpublished:
        out += ["", "## Unpublished weights: not a reproduction of the table", ""]
        out += [f"- {row['name']}: {note} (`{row['weights']}`)" for row, note in unpublished]
        out.append(
            "  Weights converted from the published checkpoint record its sha256: "
            f"`{convert_command('NAME')}`."
        )
    stopped = [row for row in rows if row.get("failed")]
    if stopped:
        out += ["", "## Stopped rows: no accuracy", ""]
        out += [f"- {row['name']}: {row['failed']}" for row in stopped]
    skipped = [(row["name"], s) for row in rows for s in row["skipped"]]
    if skipped:
        out += ["", "## Skipped images (--skip-corrupt)", ""]
        for row in rows:
            if row["skipped"]:
                out.append(
                    f"- {row['name']}: {len(row['skipped'])} skipped; "
                    f"denominator {row['images']} images"
                )
        out += [f"  - `{where}`: {reason}" for _, (where, reason) in skipped]
    return "\n".join(out) + "\n"


def _links(preset):
    """The Config and Download cells: mmpretrain's config and checkpoint, or timm's hub page."""
    if preset.mmpretrain_config:
        return f"[config]({CONFIG_URL.format(preset.mmpretrain_config)}) | [model]({preset.url})"
    page = HUB_URL.format(preset.hub_repo)
    return f"timm's pretrained_cfg | [model]({page})"


def csv_text(rows):
    """timm's results-imagenet.csv columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        if row["top1"] is None:
            continue
        writer.writerow(
            [
                row["name"],
                row["img_size"],
                f"{row['top1']:.3f}",
                f"{100 - row['top1']:.3f}",
                f"{row['top5']:.3f}",
                f"{100 - row['top5']:.3f}",
                f"{row['params'] / 1e6:.2f}",
                f"{row['crop_pct']:.3f}",
                row["interpolation"],
                "published" if row["published_weights"] else "unpublished",
                row["source_sha256"] or "",
            ]
        )
    return buf.getvalue()


def _write_atomic(path, text):
    with atomic_write(path) as tmp:
        tmp.write_text(text)


RESULT_FILES = ("results.md", "results.json", "results.csv", "results.png", "results.svg")


def write(output, rows, meta):
    """Write the three result files and the plot (results.png / .svg) into `output`;
    returns their paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = (output / "results.md", output / "results.json", output / "results.csv")
    document = {
        **{k: v for k, v in meta.items() if k != "banner"},
        "demo": bool(meta.get("banner")),
        "models": rows,
    }
    _write_atomic(paths[0], markdown(rows, meta))
    _write_atomic(paths[1], json.dumps(document, indent=2) + "\n")
    _write_atomic(paths[2], csv_text(rows))
    return (*paths, *write_plot(rows, output))


def summary_lines(rows):
    """Short lines for the log: measured vs published per row."""
    lines = []
    for row in rows:
        if row.get("failed"):
            lines.append(f"{row['name']}: STOPPED, no accuracy: {row['failed']}")
            continue
        if row["top1"] is None:
            lines.append(f"{row['name']}: no images evaluated")
            continue
        lines.append(
            f"{row['name']}: top-1 {row['top1']:.2f}% ({_diff(row['top1'], row['published_top1'])}), "
            f"top-5 {row['top5']:.2f}% ({_diff(row['top5'], row['published_top5'])}) "
            f"on {row['images']} images; {row['images_per_second'] or 0:.1f} images/s per worker"
            + (
                f"; {weights_note(row).replace('unpublished', 'UNPUBLISHED', 1)}"
                if weights_note(row)
                else ""
            )
        )
    return lines
