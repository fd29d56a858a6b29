# Pants BUILD-file macros (loaded through [GLOBAL].build_file_prelude_globs).


def test_helpers():
    """conftest.py and helper modules of a test folder, and the data its tests open by path.

    Helper modules: every .py file that is not a test. Data reaches a test's sandbox only
    if a target owns it, hence the files target.
    """
    python_test_utils(
        name="test_utils",
        sources=["*.py", "!test_*.py", "!*_test.py"],
        dependencies=["//:reqs", ":fixtures"],
    )
    files(name="fixtures", sources=["fixtures/**/*", "data/**/*"])


def test_batch(name, sources, dependencies, backend, batch=None):
    """Test files on Keras backend `backend`; with `batch`, a tag under which they share
    one pytest process (session fixtures made once)."""
    python_tests(
        name=name,
        sources=sources,
        dependencies=dependencies,
        extra_env_vars=[f"KERAS_BACKEND={backend}"],
        batch_compatibility_tag=batch,
    )
