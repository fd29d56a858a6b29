"""`--data` in S3 (moto's server on 127.0.0.1): every layout lists the same labelled items as
its local copy, and their bytes read back the same, in this process and in Ray tasks."""

import os
import pickle
import shutil
import tarfile

import pytest

from hrnet_eval import index_cache, storage
from hrnet_eval.data import DataError, load_dataset
from hrnet_eval.decode import decode
from hrnet_eval.images import digest, read_bytes
from hrnet_keras.preprocessing import imagenet_classes
from tfrecords import write_tfrecord

WNIDS = [wnid for wnid, _ in imagenet_classes()]
BUCKET = "imagenet"
SECRET = "s3cr3t-never-logged-0123456789"
N = 12  # images used here (of the session's photos)


@pytest.fixture(scope="module")
def local(photo_dir, tmp_path_factory):
    """The first N photos in every layout on disk (labels: index i -> class 7 * i)."""
    root = tmp_path_factory.mktemp("layouts")
    names = sorted(os.listdir(photo_dir))[:N]
    labels = [7 * i for i in range(N)]
    (root / "flat").mkdir()
    for name, label in zip(names, labels):
        (root / "imagenet" / "val" / WNIDS[label]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo_dir / name, root / "imagenet" / "val" / WNIDS[label] / name)
        shutil.copyfile(photo_dir / name, root / "flat" / name)
    (root / "labels.txt").write_text("".join(WNIDS[y] + "\n" for y in labels))
    (root / "manual").mkdir()
    with tarfile.open(root / "manual" / "ILSVRC2012_img_val.tar", "w") as tar:
        for name in names:
            tar.add(photo_dir / name, arcname=name)
    records = root / "tfds" / "imagenet2012" / "5.1.0"
    records.mkdir(parents=True)
    examples = [((photo_dir / n).read_bytes(), y, n) for n, y in zip(names, labels)]
    for k in range(2):  # two files: two index tasks
        write_tfrecord(
            records / f"imagenet2012-validation.tfrecord-{k:05d}-of-00002", examples[k::2]
        )
    return root


@pytest.fixture(scope="module")
def s3(local, tmp_path_factory):
    """moto's S3 on 127.0.0.1 holding a copy of `local` in bucket `BUCKET`; the AWS_*
    variables point at it (credentials from the environment, as a cluster's nodes get
    them); the index cache in a folder of its own."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage._filesystem.cache_clear()
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for path in local.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), BUCKET, path.relative_to(local).as_posix())
        yield f"s3://{BUCKET}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        storage._filesystem.cache_clear()
        storage._opened.cache_clear()


@pytest.fixture(scope="module")
def ray_local(s3):
    """A one-CPU local Ray whose workers inherit the AWS_* variables (not the objects)."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


def same_items(remote, local, root_uri, root_path):
    """The two datasets list the same images, labels and byte ranges, at the same places."""
    assert (remote.layout, len(remote)) == (local.layout, len(local))
    for r, d in zip(remote.items, local.items):
        assert (r.name, r.label, r.kind, r.offset, r.length) == (
            d.name,
            d.label,
            d.kind,
            d.offset,
            d.length,
        )
        assert r.source == root_uri + d.source[len(str(root_path)) :]
        assert digest(read_bytes(r)) == digest(read_bytes(d))


def test_folders_and_flat_list_and_read_as_on_disk(s3, local):
    for layout, labels in (("imagenet", None), ("flat", local / "labels.txt")):
        remote = load_dataset(f"{s3}/{layout}", labels_file=labels)
        same_items(remote, load_dataset(local / layout, labels_file=labels), s3, local)
    # the labels file in the bucket too, and a trailing slash
    remote = load_dataset(f"{s3}/flat/", labels_file=f"{s3}/labels.txt")
    assert [i.label for i in remote.items] == [7 * i for i in range(N)]
    # the stamp of a shard comes from the listing, and moves when an object is replaced
    before = remote.content_stamp(0, 4)
    import boto3

    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"flat/{remote.items[2].name}", Body=b"x")
    after = load_dataset(f"{s3}/flat", labels_file=f"{s3}/labels.txt")
    assert after.content_stamp(0, 4) != before and after.content_stamp(4, 8) == (
        remote.content_stamp(4, 8)
    )
    boto3.client("s3").upload_file(
        str(local / "flat" / remote.items[2].name), BUCKET, f"flat/{remote.items[2].name}"
    )


def test_tar_and_tfrecords_indexed_by_ray_tasks_then_cached(s3, local, ray_local):
    tar = load_dataset(f"{s3}/manual")
    same_items(tar, load_dataset(local / "manual"), s3, local)
    records = load_dataset(f"{s3}/tfds")
    same_items(records, load_dataset(local / "tfds"), s3, local)
    assert records.root == f"{s3}/tfds/imagenet2012/5.1.0"
    assert len(list(index_cache.cache_dir().glob("*.json"))) == 3  # one per object
    # A decode task reads its items' bytes itself (ranged reads, its own filesystem).
    task = ray_local.remote(decode)
    remote = ray_local.get(task.remote(list(records.items[3:7])))
    on_disk = decode(list(load_dataset(local / "tfds").items[3:7]))
    # file 0 holds images 0, 2, ... 10; file 1 images 1, 3, ...
    assert remote["labels"] == on_disk["labels"] == [7 * i for i in (6, 8, 10, 1)]
    assert remote["digests"] == on_disk["digests"]
    assert (remote["images"] == on_disk["images"]).all()
    assert SECRET.encode() not in pickle.dumps(records.items)


def test_cached_indexes_need_no_cluster(s3, local, ray_local):
    load_dataset(f"{s3}/tfds"), load_dataset(f"{s3}/manual")  # indexed (or cached) already
    ray_local.shutdown()

    def connect():
        raise AssertionError("a cached index was read again")

    assert len(load_dataset(f"{s3}/tfds", connect=connect)) == N
    assert len(load_dataset(f"{s3}/manual", limit=5, connect=connect)) == 5


def test_refused_uris_name_what_to_do(s3):
    with pytest.raises(DataError) as info:
        load_dataset(f"s3://AKIATESTKEY:{SECRET}@{BUCKET}/flat")
    assert SECRET not in str(info.value) and "credentials" in str(info.value)
    with pytest.raises(DataError, match="take no credentials or options"):
        load_dataset(f"{s3}/flat?endpoint_override=elsewhere")
    with pytest.raises(DataError, match=f"Data path {s3}/nothing does not exist"):
        load_dataset(f"{s3}/nothing")
    with pytest.raises(
        DataError, match="Bucket s3://no-such-bucket does not exist or cannot be read"
    ):
        load_dataset("s3://no-such-bucket/val")
    with pytest.raises(DataError, match=f"No ImageNet validation layout in {s3}"):
        load_dataset(s3)
