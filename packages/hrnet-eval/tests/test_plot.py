"""results.png / results.svg: Top-1 against GFLOPs."""

import numpy as np
from PIL import Image

from hrnet_eval import plot, results
from hrnet_eval.spec import ModelSpec


def record(end, top1):
    return {
        "start": 0,
        "end": end,
        "images": end,
        "top1_hits": top1,
        "top5_hits": end,
        "seconds": 1.0,
        "skipped": [],
    }


def spec(name, weights, published):
    return ModelSpec(name, weights, "sha256:aa", source_sha256="0c10b180", published=published)


def rows():
    published = [("hrnet-w18", 770, "/w/a.h5"), ("hrnet-w48-ssld", 830, "/w/b.h5")]
    return [
        *(
            results.make_row(n, [record(1000, top1)], backend="jax", spec=spec(n, w, True))
            for n, top1, w in published
        ),
        results.make_row(  # the demo's seeded initialisers
            "hrnet-w64", [record(8, 1)], backend="jax", spec=spec("hrnet-w64", None, False)
        ),
        results.make_row(  # nothing evaluated
            "hrnet-w30", [], backend="jax", spec=spec("hrnet-w30", "/w/c.h5", True)
        ),
    ]


def test_plot_is_written_as_png_and_svg_and_is_not_blank(tmp_path):
    png, svg = plot.write_plot(rows(), tmp_path)
    assert (png.name, svg.name) == ("results.png", "results.svg")
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (
            int(plot.SIZE_INCHES[0] * plot.DPI),
            int(plot.SIZE_INCHES[1] * plot.DPI),
        )
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    # not blank: a white page with dark text and the coloured markers
    assert (pixels.min(axis=1) < 100).mean() > 0.002
    blue = (pixels[:, 2] > 150) & (pixels[:, 0] < 100)  # tab:blue, the published points
    assert blue.sum() > 50
    text = svg.read_text()
    for label in ("HRNet-W18", "HRNet-W48 (ssld)", "HRNet-W64", "HRNet-W30", "GFLOPs"):
        assert label in text
    # only the seeded row is marked as not having the published weights
    assert text.count(plot.UNPUBLISHED) == 2  # its label and the legend entry
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_published_weights_follows_the_row():
    w18, _, seeded, _ = rows()
    assert plot.published_weights(w18) and not plot.published_weights(seeded)
