"""Test-wide setup shared by every package.

torchvision pulls in Triton, whose LLVM clashes with TensorFlow's when Triton
loads second (a segfault in `import triton`). Tests that use the reference
model with the TensorFlow backend need both, so load the torch stack first.
"""

try:
    import torchvision  # noqa: F401
except ImportError:  # a run without torch: nothing to order
    pass
