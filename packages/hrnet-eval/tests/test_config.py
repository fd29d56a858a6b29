"""`EvalConfig`: each default in one place, the CLI's the same as code's."""

from hrnet_eval.__main__ import parse_args
from hrnet_eval.config import DEMO_DEFAULTS, EvalConfig, default_compile_cache


def test_code_that_builds_a_config_gets_the_clis_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    built = EvalConfig(models=("hrnet-w18",), data="/data")
    assert built.compile_cache == default_compile_cache() == str(tmp_path / "jax")
    assert parse_args(["--models", "hrnet-w18", "--data", "/data"]) == built
    given = parse_args(["--models", "hrnet-w18", "--data", "/data", "--compile-cache", "None"])
    assert given.compile_cache is None  # "none": no cache kept
    given = parse_args(["--models", "hrnet-w18", "--data", "/d", "--batch-size", "8"])
    assert (given.batch_size, given.shard_size, given.backend) == (8, 500, "jax")


def test_the_demo_fills_in_what_was_not_given():
    demo = parse_args(["--demo", "--shard-size", "2"])
    assert demo.shard_size == 2 and demo.models == DEMO_DEFAULTS["models"]
    assert (demo.output, demo.batch_size, demo.workers) == ("results/demo", 4, 1)
