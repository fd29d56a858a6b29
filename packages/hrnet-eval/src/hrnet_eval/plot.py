"""results.png / results.svg: Top-1 against GFLOPs, published and measured, as the paper draws it.

`write_plot(rows, output)` takes the rows of results.json (`results.make_row`) and writes both
files into `output` with matplotlib's Agg backend (no display needed). Each row is a published
point (filled) and, where images were evaluated, a measured point (hollow) joined to it; rows
whose weights are not the published files (as `results.make_row` says: other files, or
the seeded random init of `--demo`) are drawn grey and labelled "(unpublished weights)", as
results.md names them. Labels stay inside the axes.
"""

from pathlib import Path

from hrnet_keras.files import atomic_write

from hrnet_eval.spec import label

SIZE_INCHES = (8.0, 5.0)
DPI = 150
UNPUBLISHED = "(unpublished weights)"  # as results.md names such rows


def published_weights(row):
    """Whether the row's weights are the row's published file (`results.make_row`)."""
    return bool(row["published_weights"])


def figure(rows, title="HRNet on ImageNet-1k: Top-1 against GFLOPs"):
    """The matplotlib Figure for `rows` (not saved)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    drawn = set()

    def point(x, y, label, **style):
        ax.plot([x], [y], linestyle="none", label=None if label in drawn else label, **style)
        drawn.add(label)

    for row in rows:
        gflops = row["flops"] / 1e9
        published = published_weights(row)
        colour = "tab:blue" if published else "tab:gray"
        point(gflops, row["published_top1"], "published", marker="o", color="tab:blue", ms=7)
        text = label(row["name"])
        if row.get("top1") is not None:
            legend = "measured" if published else f"measured {UNPUBLISHED}"
            point(gflops, row["top1"], legend, marker="s", mfc="white", mec=colour, mew=1.8, ms=7)
            ax.plot([gflops] * 2, [row["published_top1"], row["top1"]], ":", color=colour, lw=1)
            if not published:
                text += f" {UNPUBLISHED}"
        ax.annotate(
            text,
            (gflops, row["published_top1"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    ax.set_xlabel("GFLOPs (multiply-adds, 224x224)")
    ax.set_ylabel("ImageNet-1k Top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize=8)
    keep_inside(fig, ax)
    return fig


def keep_inside(fig, ax):
    """Move each point's label to the other side of its point where it would cross the
    axes' right or top edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    frame = ax.get_window_extent(renderer)
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        (dx, dy), ha, va = text.xyann, "left", "baseline"
        if box.x1 > frame.x1:
            dx, ha = -abs(dx), "right"
        if box.y1 > frame.y1:
            dy, va = -abs(dy), "top"
        text.xyann = (dx, dy)
        text.set(ha=ha, va=va)


def write_plot(rows, output):
    """Write `results.png` and `results.svg` for `rows` into `output`; returns their paths."""
    import matplotlib

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    fig = figure(rows)
    paths = (output / "results.png", output / "results.svg")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        for path in paths:
            with atomic_write(path) as tmp:
                fig.savefig(tmp, format=path.suffix[1:])
    return paths
