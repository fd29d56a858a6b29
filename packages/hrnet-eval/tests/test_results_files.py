"""Merging shard records; results.md / .json / .csv; progress lines."""

import csv
import json

import pytest

from hrnet_eval import results
from hrnet_eval.demo import random_spec
from hrnet_eval.progress import Progress
from hrnet_eval.spec import ModelSpec

W18_SHA = "0c10b180" + "1" * 56  # the published prefix of hrnet-w18
SSLD_SHA = "455f69ea" + "2" * 56


def spec(name, path, source_sha256=None, published=False):
    return ModelSpec(name, path, "sha256:ab", source_sha256=source_sha256, published=published)


def record(start, end, top1, top5, seconds=2.0, skipped=()):
    return {
        "start": start,
        "end": end,
        "images": end - start - len(skipped),
        "top1_hits": top1,
        "top5_hits": top5,
        "seconds": seconds,
        "skipped": [list(s) for s in skipped],
    }


META = {
    "data": "/data/val",
    "layout": "class folders",
    "images": 50000,
    "backend": "jax",
    "shard_size": 500,
    "finished": "2026-01-01T00:00:00+00:00",
    "banner": None,
}


@pytest.fixture()
def rows():
    w18 = [record(0, 25000, 19190, 23360, 10.0), record(25000, 50000, 19185, 23360, 15.0)]
    ssld = [record(0, 3, 2, 3, 1.0, skipped=[("/data/val/n1/x.JPEG", "Cannot decode image x")])]
    return [
        results.make_row(
            "hrnet-w18",
            w18,
            backend="jax",
            spec=spec("hrnet-w18", "/w/hrnet-w18.weights.h5", W18_SHA, published=True),
        ),
        results.make_row(
            "hrnet-w18-ssld",
            ssld,
            backend="jax",
            spec=spec("hrnet-w18-ssld", "/w/ssld.weights.h5", SSLD_SHA, published=True),
        ),
    ]


def test_rows_merge_counts_beside_published_figures(rows):
    w18, ssld = rows
    assert (w18["images"], w18["top1_hits"], w18["top5_hits"]) == (50000, 38375, 46720)
    assert (w18["top1"], w18["top5"]) == (76.75, 93.44)
    assert (w18["published_top1"], w18["published_top5"]) == (76.75, 93.44)
    assert (w18["params"], w18["flops"]) == (21295164, 4330397932)
    assert (w18["seconds"], w18["images_per_second"]) == (25.0, 2000.0)
    assert ssld["images"] == 2 and ssld["top1"] == 100.0 and len(ssld["skipped"]) == 1


def test_result_files(rows, tmp_path):
    md, js, cs, png, svg = results.write(tmp_path, rows, META)
    assert (png.name, svg.name) == ("results.png", "results.svg") and png.stat().st_size > 0
    document = json.loads(js.read_text())
    assert document["demo"] is False and document["images"] == 50000
    required = {
        "name",
        "top1",
        "top5",
        "images",
        "published_top1",
        "published_top5",
        "params",
        "flops",
        "img_size",
        "crop_pct",
        "interpolation",
        "backend",
        "seconds",
        "images_per_second",
    }
    assert required <= set(document["models"][0])
    with open(cs) as f:
        table = list(csv.reader(f))
    assert table[0] == [
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
    ]
    assert table[1] == [
        "hrnet-w18",
        "224",
        "76.750",
        "23.250",
        "93.440",
        "6.560",
        "21.30",
        "0.875",
        "bilinear",
        "published",
        W18_SHA,
    ]
    text = md.read_text()
    assert (
        "| HRNet-W18\\* | 21.30 | 4.33 | 224/256 bilinear | 76.75 | 76.75 | +0.00 | 93.44 | 93.44 "
        "| +0.00 | 50000 "
        "| [config](https://github.com/open-mmlab/mmclassification/blob/master/configs/hrnet/"
        "hrnet-w18_4xb32_in1k.py) | [model](https://download.openmmlab.com/"
    ) in text
    assert (
        "| HRNet-W18 (ssld)\\* | 21.30 | 4.33 | 224/256 bilinear | 81.06 | 100.00 | +18.94 |"
        in text
    )
    assert "hrnet-w18-ssld: 1 skipped; denominator 2 images" in text
    assert "`/data/val/n1/x.JPEG`: Cannot decode image x" in text
    assert "MEAN NOTHING" not in text and "unpublished" not in text.lower()
    demo = results.markdown(rows, {**META, "banner": "DEMO ... MEAN NOTHING"})
    assert demo.startswith("```\nDEMO ... MEAN NOTHING\n```")


@pytest.mark.parametrize(
    "row_spec, note",
    [
        (spec("hrnet-w18", "/w/mine.weights.h5", "9" * 64), "source sha256 " + "9" * 64),
        (spec("hrnet-w18", "/w/old.weights.h5"), "source not recorded"),
        (random_spec("hrnet-w18"), "random init (keras-init-seed-0)"),
    ],
    ids=["other-source", "not-recorded", "random"],
)
def test_rows_not_from_the_published_file_say_so_everywhere(tmp_path, row_spec, note):
    records = [record(0, 100, 77, 93)]
    row = results.make_row("hrnet-w18", records, backend="jax", spec=row_spec)
    md, js, cs, *_ = results.write(tmp_path, [row], META)
    text = md.read_text()
    assert "| HRNet-W18\\* (**unpublished weights**) | 21.30 |" in text
    assert f"- hrnet-w18: unpublished weights, {note}" in text
    model = json.loads(js.read_text())["models"][0]
    assert model["published_weights"] is False and model["source_sha256"] == row_spec.source_sha256
    with open(cs) as f:
        table = list(csv.reader(f))
    assert table[1][-2:] == ["unpublished", row_spec.source_sha256 or ""]
    (line,) = results.summary_lines([row])
    assert line.endswith(f"; UNPUBLISHED weights, {note}")


def test_a_timm_row_says_its_own_pipeline_and_source(tmp_path, monkeypatch):
    import hashlib

    from hub_cache import cache_repo

    from hrnet_eval.weights import is_published
    from hrnet_keras.configs import get_preset

    name = "hrnet_w18_small.gluon_in1k"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cache_repo(tmp_path / "hub", f"timm/{name}", {"model.safetensors": b"weights"}, "a1" * 20)
    assert is_published(get_preset(name), hashlib.sha256(b"weights").hexdigest())
    assert not is_published(get_preset(name), "7" * 64)  # not the bytes of the hub's file
    other_row = get_preset("hrnet_w18_small.ms_in1k")  # its repository is not cached
    assert not is_published(other_row, hashlib.sha256(b"weights").hexdigest())
    row_spec = spec(name, "/w/small.weights.h5", "7" * 64, published=True)
    row = results.make_row(name, [record(0, 100, 74, 91)], backend="jax", spec=row_spec)
    assert (row["family"], row["pipeline"]) == ("timm", "224/256 bicubic")
    assert (row["img_size"], row["crop_pct"], row["interpolation"]) == (224, 0.875, "bicubic")
    assert (row["published_top1"], row["params"]) == (73.934, 13183624)
    md, _, cs, *_ = results.write(tmp_path, [row], META)
    assert (
        "| hrnet_w18_small.gluon_in1k | 13.18 | 1.62 | 224/256 bicubic | 73.93 | 74.00 | +0.07 "
    ) in md.read_text()
    assert "[model](https://huggingface.co/timm/hrnet_w18_small.gluon_in1k) |" in md.read_text()
    with open(cs) as f:
        assert list(csv.reader(f))[1][7:9] == ["0.875", "bicubic"]


def test_progress_lines_give_rate_and_eta():
    now = [100.0]
    lines = []
    progress = Progress(
        {"hrnet-w18": 1000},
        {"hrnet-w18": 200},
        interval=5,
        clock=lambda: now[0],
        out=lambda text, flush: lines.append(text),
    )
    progress.add("hrnet-w18", 100)  # first shard of this run: no rate yet
    now[0] = 102.0
    progress.add("hrnet-w18", 100)  # too soon for another line
    now[0] = 110.0
    progress.add("hrnet-w18", 300)  # 400 images in 10 s since the first shard
    now[0] = 112.0
    progress.add("hrnet-w18", 300)  # finished: always printed
    assert lines == [
        "[hrnet-w18] 300/1000 images (30.0%)",
        "[hrnet-w18] 700/1000 images (70.0%), 40.0 images/s, ETA 0:00:08",
        "[hrnet-w18] 1000/1000 images (100.0%), 58.3 images/s",
    ]
