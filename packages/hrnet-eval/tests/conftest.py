"""Session fixtures: a small ImageNet-layout image set labelled from the mmpretrain
reference, its checkpoints converted for hrnet-keras, a real Ray head, and a cluster of a
head and two worker nodes that share no disk with the tests, with S3 on 127.0.0.1."""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest

import fixture_cache
import reference_model
from imageset import ImageSet, choose_labels, count_hits, write_photos
from moto_s3 import MotoS3
from ray_head import RayHead
from ray_nodes import NodeCluster

N_IMAGES = 24
# Rows evaluated end to end (one architecture: one compile) and their reference seeds.
MODELS = {"hrnet-w18": 11, "hrnet-w18-ssld": 12}
# A timm row with a pipeline of its own (bicubic), against timm's model and eval transform.
TIMM_ROW, TIMM_SEED = "hrnet_w18_small.gluon_in1k", 13


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hrnet-eval")


@pytest.fixture(scope="session")
def photo_dir(workdir):
    """24 JPEGs named ILSVRC2012_val_00000001.JPEG ... (no labels)."""
    write_photos(workdir / "staging", N_IMAGES)
    return workdir / "staging"


def _build_image_set(workdir):
    """The 24 JPEGs labelled from the W18 reference; the reference checkpoints converted:
    mmpretrain's for the table's rows, timm's (its own eval transform) for `TIMM_ROW`."""
    import hrnet_keras
    from hrnet_keras.checkpoints import load_checkpoint_into
    from hrnet_keras.configs import get_preset
    from hrnet_keras.checkpoints.conversion import convert_checkpoint
    from hrnet_keras.preprocessing import imagenet_classes

    staging = workdir / "staging"
    write_photos(staging, N_IMAGES)
    names = sorted(os.listdir(staging))
    x = reference_model.reference_pipeline([staging / n for n in names])
    weights_dir = workdir / "weights"
    weights_dir.mkdir()
    keras_model = hrnet_keras.create_model("hrnet-w18")  # both rows share the architecture
    top5, logits = {}, {}
    for name, seed in MODELS.items():
        model = reference_model.randomize(reference_model.build_reference(name), seed)
        reference_model.make_discriminative(model, x)  # predictions differ by image
        logits[name] = reference_model.reference_logits(model, x)
        top5[name] = np.argsort(-logits[name], axis=1, kind="stable")[:, :5].tolist()
        pth = reference_model.save_mmcls(model, workdir / f"{name}.pth")
        load_checkpoint_into(keras_model, pth, name)  # the converter's reading of the .pth
        keras_model.save_weights(str(weights_dir / get_preset(name).keras_weights))
    timm_model, safetensors = reference_model.timm_checkpoint(
        TIMM_ROW, workdir / f"{TIMM_ROW}.safetensors", seed=TIMM_SEED
    )
    x_timm = reference_model.timm_pipeline(timm_model, [staging / n for n in names])
    reference_model.make_discriminative(timm_model, x_timm)
    timm_logits = reference_model.timm_forward(timm_model, x_timm)
    top5[TIMM_ROW] = np.argsort(-timm_logits, axis=1, kind="stable")[:, :5].tolist()
    reference_model.save_safetensors(timm_model, safetensors)
    convert_checkpoint(safetensors, TIMM_ROW, weights_dir)
    labels = choose_labels(logits["hrnet-w18"])
    wnids = [imagenet_classes()[y][0] for y in labels]

    class_folders, flat = workdir / "val", workdir / "flat"
    for name, wnid in zip(names, wnids):
        (class_folders / wnid).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staging / name, class_folders / wnid / name)
    shutil.copytree(staging, flat)
    (workdir / "val_labels.txt").write_text("".join(w + "\n" for w in wnids))
    found = {"names": names, "labels": labels, "wnids": wnids, "top5": top5}
    (workdir / "imageset.json").write_text(json.dumps(found))


@pytest.fixture(scope="session")
def image_set():
    """The image set of `_build_image_set`, built once per machine (tests/fixture_cache.py):
    read-only, tests copy what they change."""
    key = {"images": N_IMAGES, "models": MODELS, "timm": [TIMM_ROW, TIMM_SEED]}
    modules = ("reference_model", "imageset", "hrnet_keras")
    workdir = fixture_cache.cached_dir("eval-image-set", _build_image_set, key=key, modules=modules)
    found = json.loads((workdir / "imageset.json").read_text())
    counts = {m: count_hits(found["top5"][m], found["labels"]) for m in found["top5"]}
    return ImageSet(
        found["names"],
        found["labels"],
        found["wnids"],
        workdir / "val",
        workdir / "flat",
        workdir / "val_labels.txt",
        workdir / "weights",
        found["top5"],
        counts,
    )


@pytest.fixture(scope="session")
def ray_head(workdir):
    """A Ray head on 127.0.0.1 with 2 logical GPUs; stopped by the pids it started."""
    head = RayHead(num_cpus=4, num_gpus=2)
    head.start()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def compile_cache():
    """The JAX cache the workers share (the repository's test cache when set)."""
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "hrnet-jax-cache"
    )


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 on 127.0.0.1 (`moto_s3.MotoS3`: `.env` holds its AWS_* variables, which
    this process does not get; `.client()`, `.upload_tree()`)."""
    store = MotoS3().start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory, s3_server):
    """A Ray head (1 CPU, no GPU) and two worker nodes (2 CPUs, 1 logical GPU each) on
    this machine, as machines that share no disk with the driver: each node sees an empty
    folder in place of pytest's temp root (every test's `tmp_path`: its data, weights,
    output) and of the fixture cache (`image_set`, its weights), whatever is created there
    later. The nodes see the code, the rest of the disk (the compile cache included), and
    every node (the head too) has the S3 store's AWS_* variables, a worker node also
    TEST_NODE_NAME (its name); a node killed hard is DEAD within about a second
    (ray_nodes.FAST_HEALTH_CHECK). Tests take `ray_nodes`."""
    hidden = [tmp_path_factory.getbasetemp(), fixture_cache.root()]
    for folder in hidden:
        folder.mkdir(parents=True, exist_ok=True)
    cluster = NodeCluster(head_cpus=1, head_env=s3_server.env, hidden=hidden)
    try:
        for name in ("worker-1", "worker-2"):
            env = {"TEST_NODE_NAME": name}
            cluster.add_node(name=name, num_cpus=2, num_gpus=1, env=env, wait=False)
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def ray_nodes(node_cluster):
    """`node_cluster` with its head and both worker nodes alive (a node an earlier test
    removed is started again)."""
    node_cluster.restore()
    return node_cluster
