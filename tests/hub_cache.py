"""A Hugging Face Hub cache laid out by hand, as huggingface_hub lays it out."""

import hashlib
import os


def cache_repo(hub, repo_id, files, commit, ref="main"):
    """Lay out `repo_id` under `hub`: blobs named by sha256, a snapshot of symlinks per
    commit, refs/<ref> naming the commit. Returns the repository's folder."""
    root = hub / f"models--{repo_id.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return root
