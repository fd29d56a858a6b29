"""python -m hrnet_eval: reproduce the HRNet ImageNet-1k table on a Ray cluster.

Start here (no ImageNet needed, about a minute on a laptop):
    python -m hrnet_eval --demo

On a cluster (joins it through RAY_ADDRESS; give absolute paths):
    ray job submit -- python -m hrnet_eval --all --data /data/imagenet/val \\
        --weights-dir /data/hrnet-weights --output /data/results

Each row runs at its own test pipeline (--list shows it); rows sharing one share
each decoded image, so timm's rows (--family timm) join the table in one job.

Without RAY_ADDRESS a private local Ray cluster is started. Each finished
shard is saved under OUTPUT/shards at once: rerunning the same command resumes.
"""

import argparse
import math
import os
import sys
from pathlib import Path

from hrnet_keras.configs import FAMILIES, get_preset, list_models

from hrnet_eval.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OUTPUT,
    DEFAULT_PROGRESS_SECONDS,
    DEFAULT_SHARD_SIZE,
    DEFAULT_WORKER_WAIT_SECONDS,
    DEMO_DEFAULTS,
    PLACEMENTS,
    TABLE_FAMILY,
    EvalConfig,
    default_compile_cache,
)
from hrnet_eval.console import quiet_print
from hrnet_eval.errors import EvalError
from hrnet_eval import preflight
from hrnet_eval.preflight import batch_size_problem


class Parser(argparse.ArgumentParser):
    """Usage errors as one line: `python -m hrnet_eval: error: ... (see --help)`, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    parser = Parser(
        prog="python -m hrnet_eval",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + "\nRows: " + ", ".join(list_models()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to evaluate")
    what.add_argument(
        "--models",
        type=_model_list,
        metavar="NAME[,NAME...]",
        help="comma-separated rows, e.g. hrnet-w18,hrnet-w48-ssld,hrnet_w18_small.gluon_in1k "
        "(timm's names of the table's checkpoints mean those rows)",
    )
    what.add_argument("--all", action="store_true", help="every row of the mmclassification table")
    what.add_argument(
        "--family",
        choices=FAMILIES,
        action="append",
        help="every row of a family: mmcls (the table, as --all) or timm (timm's other "
        "weights); may be given twice, and beside --models",
    )
    what.add_argument(
        "--demo",
        action="store_true",
        help="scikit-image's sample photos, seeded RANDOM weights (accuracies mean "
        "nothing), CPU workers on a local cluster: shows the machinery working",
    )
    what.add_argument(
        "--list", action="store_true", help="list the rows with published figures and exit"
    )
    what.add_argument(
        "--data",
        metavar="PATH",
        help="ImageNet validation: class folders (val/n01440764/*.JPEG), flat "
        "ILSVRC2012_val_*.JPEG files (labels from --labels or tensorflow-datasets' "
        "validation_labels.txt), a tfds manual_dir with ILSVRC2012_img_val.tar, "
        "or a prepared tfds data_dir (imagenet2012); a local path or s3://bucket/prefix, "
        "gs://bucket/prefix",
    )
    what.add_argument(
        "--labels",
        metavar="FILE",
        help="labels of a flat folder or tar: one wnid/index per line in image-number "
        "order, or 'FILE LABEL' lines",
    )
    what.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N images")
    what.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable images (each is reported; accuracies use the images "
        "evaluated as denominator) instead of failing",
    )

    weights = parser.add_argument_group("weights")
    weights.add_argument(
        "--weights-dir",
        metavar="DIR",
        help="converted weights NAME.weights.h5 (default: the hrnet-keras cache, "
        "$HRNET_KERAS_CACHE or ~/.cache/hrnet-keras); missing ones are "
        "downloaded and converted there",
    )
    weights.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing weights"
    )

    run = parser.add_argument_group("execution")
    run.add_argument(
        "--output",
        metavar="DIR",
        help=f"results and finished shards (default: {DEFAULT_OUTPUT}/, "
        f"{DEMO_DEFAULTS['output']}/ with --demo)",
    )
    run.add_argument(
        "--backend",
        choices=("jax", "tensorflow", "torch"),
        help=f"Keras backend of the workers (default: {EvalConfig.backend})",
    )
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE}; the last batch "
        "of a shard is padded, so counts do not depend on it)",
    )
    run.add_argument(
        "--gpus-per-worker",
        type=_non_negative_float,
        metavar="G",
        help="GPU share of each worker, fractions allowed (0.5: two per GPU); 0 runs "
        "CPU workers (default: 1 if the cluster has GPUs, else 0)",
    )
    run.add_argument(
        "--cpus-per-worker",
        type=_positive_float,
        metavar="C",
        help="CPUs reserved by each worker (default: 1 for GPU workers; CPU workers share "
        "a node's CPUs but one); the CPUs left over decode the images, one task per CPU",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="number of workers (default: GPUs / --gpus-per-worker; CPU workers: "
        "one per 8 CPUs)",
    )
    run.add_argument(
        "--rows-per-worker",
        type=_positive_int,
        metavar="N",
        help="rows a worker holds at once; each decoded shard goes through all of them "
        "(default: every row on GPU workers; CPU workers: as many as their share of host "
        "memory holds)",
    )
    run.add_argument(
        "--shard-size",
        type=_positive_int,
        metavar="N",
        help=f"images per work unit (default: {DEFAULT_SHARD_SIZE})",
    )
    run.add_argument(
        "--decode-placement",
        choices=PLACEMENTS,
        help="where a shard's decode tasks run: on the node of the workers that will score "
        "it, waiting for its CPUs (worker-node), or wherever Ray puts them (anywhere) "
        "(default: worker-node)",
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join (default: $RAY_ADDRESS, set by `ray job submit`; "
        "without either a local cluster is started)",
    )
    run.add_argument(
        "--local-cpus",
        type=_positive_int,
        metavar="N",
        help="CPUs of a local cluster (default: all)",
    )
    run.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="the JAX workers' programs and XLA's compiled code, 'none' to keep none "
        f"(default: {default_compile_cache()})",
    )
    run.add_argument(
        "--worker-wait-seconds",
        type=_non_negative_float,
        metavar="S",
        help="after a worker is lost (its node died), how long to wait for a node that can "
        "host another before stopping; finished shards are kept, and the same command "
        f"resumes (default: {DEFAULT_WORKER_WAIT_SECONDS:g})",
    )
    run.add_argument(
        "--progress-seconds",
        type=_non_negative_float,
        metavar="S",
        help=f"seconds between progress lines per model (default: {DEFAULT_PROGRESS_SECONDS:g})",
    )
    return parser


def _model_list(text):
    names, unknown = [], []
    for name in filter(None, (n.strip() for n in text.split(","))):
        try:
            names.append(get_preset(name).name)  # an alias is its row
        except ValueError:
            unknown.append(name)
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(map(repr, unknown)) or repr(text)}; "
            f"known: {', '.join(list_models())}"
        )
    return list(dict.fromkeys(names))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _finite_float(text, *, positive):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "above 0" if positive else "of at least 0"
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def _non_negative_float(text):
    return _finite_float(text, positive=False)


def _positive_float(text):
    return _finite_float(text, positive=True)


def list_rows():
    """The --list table: each row's family, test pipeline, published figures and weights file."""
    width = max(map(len, list_models())) + 2
    lines = [
        f"{'model':<{width}}{'family':<8}{'pipeline':<18}{'params(M)':>9}{'flops(G)':>9}"
        f"{'top-1':>8}{'top-5':>8}  weights file"
    ]
    for p in map(get_preset, list_models()):
        lines.append(
            f"{p.name:<{width}}{p.family:<8}{p.pipeline.describe():<18}{p.params / 1e6:>9.2f}"
            f"{p.flops / 1e9:>9.2f}{p.top1:>8.2f}{p.top5:>8.2f}  {p.keras_weights}"
        )
    return "\n".join(lines)


def parse_args(argv):
    """The `EvalConfig` of command line `argv`, or None for --list; exits 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        return None
    if args.models and args.all:
        parser.error("give either --models or --all, not both")
    if args.family and args.all:
        parser.error("--all is --family mmcls: give one of them")
    families = [TABLE_FAMILY] if args.all else args.family or []
    if families:
        chosen = [row for family in families for row in list_models(family)]
        args.models = list(dict.fromkeys([*(args.models or []), *chosen]))
    if args.demo:
        if args.data:
            parser.error("--demo uses scikit-image's photos; drop --data (or drop --demo)")
    elif not args.models:
        parser.error("give --models NAME[,NAME...], --all, --family NAME, --demo or --list")
    elif not args.data:
        parser.error("give --data PATH (the ImageNet validation images), or try --demo")
    config = EvalConfig.from_namespace(args)
    if batch_size_problem(config.batch_size, config.models):
        parser.error(batch_size_problem(config.batch_size, config.models))
    return config


def main(argv=None):
    config = parse_args(argv)
    if config is None:
        quiet_print(list_rows(), flush=True)
        return 0
    # The driver imports Keras only to convert weights; JAX loads fastest.
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from hrnet_eval import cluster

    kept = f"finished shards are kept in {Path(config.output).resolve() / 'shards'}"
    cluster.stop_on_sigterm()
    try:
        preflight.check(config)
        cluster.prepare(config.address)  # before Ray's import (the job's modules import it)
        from hrnet_eval import job

        job.run(config, out=quiet_print)
    except EvalError as exc:
        hint = f" ({kept}; {exc.hint})" if exc.hint else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopped: {kept}; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        _shutdown_ray()
    return 0


def _shutdown_ray():
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
