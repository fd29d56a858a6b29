"""What a Ray user reads: progress lines with running top-1/top-5 and the job's ETA;
results.png's labels inside its axes."""

from hrnet_eval import plot, results
from hrnet_eval.progress import Progress
from hrnet_eval.spec import ModelSpec


def record(images, top1, top5):
    return {"images": images, "top1_hits": top1, "top5_hits": top5}


def test_lines_give_running_accuracy_and_the_jobs_eta():
    now = [0.0]
    lines = []
    progress = Progress(
        {"hrnet-w18": 100, "hrnet-w30": 100},
        {"hrnet-w18": 20, "hrnet-w30": 0},
        records={"hrnet-w18": [record(20, 10, 18)], "hrnet-w30": []},  # resumed
        interval=0,
        clock=lambda: now[0],
        out=lambda text, flush: lines.append(text),
    )
    progress.add("hrnet-w18", 20, record(20, 14, 20))  # the job's first shard: no rate yet
    now[0] = 10.0
    progress.add("hrnet-w30", 20, record(20, 5, 10))
    now[0] = 20.0
    progress.add("hrnet-w18", 20, record(20, 16, 19))
    assert lines == [
        "[hrnet-w18] 40/100 images (40.0%), top-1 60.00%, top-5 95.00%; job 40/200 (20.0%)",
        "[hrnet-w30] 20/100 images (20.0%), top-1 25.00%, top-5 50.00%; "
        "job 60/200 (30.0%), ETA 0:01:10",  # 20 images in 10 s since the job's first shard
        "[hrnet-w18] 60/100 images (60.0%), top-1 66.67%, top-5 95.00%, 1.0 images/s, "
        "ETA 0:00:40; job 80/200 (40.0%), ETA 0:01:00",
    ]
    assert not any("\x1b" in line for line in lines)


def test_labels_stay_inside_the_axes():
    """Labels of points at the top and right edges turn back into the axes."""
    rows = [
        results.make_row(
            name,
            [{**record(1000, top1, 1000), "start": 0, "end": 1000, "seconds": 1, "skipped": []}],
            backend="jax",
            spec=ModelSpec(name, "/w.h5", "sha256:aa", source_sha256="0c", published=False),
        )
        for name, top1 in (("hrnet-w18", 0), ("hrnet-w64", 10))
    ]
    fig = plot.figure(rows)
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    frame = ax.get_window_extent(renderer)
    assert [t.get_text() for t in ax.texts] == [
        f"HRNet-W18 {plot.UNPUBLISHED}",
        f"HRNet-W64 {plot.UNPUBLISHED}",
    ]
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, text
