"""ONNX from the torch backend through torch's exporter (`torch.export`, onnxscript).

Keras' own `model.export(format="onnx")` on torch takes that exporter only for a fixed
batch; for a dynamic batch it takes TorchScript's exporter, which torch deprecates. Here
the batch stays dynamic (`torch.export.Dim`) on torch's current exporter.
"""

ONNXSCRIPT = "onnxscript==0.7.2"


def export_onnx(model, path, input_spec, *, verbose=False):
    """Write `model` (a Keras model on the torch backend) as ONNX to `path`; `input_spec`
    (a `keras.InputSpec`, batch `None`) names and types its one input."""
    import importlib.util

    import torch

    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError(
            f"--format onnx on the torch backend needs onnxscript: pip install '{ONNXSCRIPT}'"
        )
    # torch.export takes 0 and 1 as fixed sizes: trace with a batch of 2
    example = torch.zeros((2, *input_spec.shape[1:]), dtype=getattr(torch, input_spec.dtype))
    model.eval()
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[input_spec.name],
        output_names=["output_0"],
        # Keras' forward(*args): one dict per positional argument
        dynamic_shapes=(({0: torch.export.Dim("batch")},),),
        dynamo=True,
        verbose=verbose,
    )
    program.save(str(path))
