"""Weights from an hrnet_keras model into the KerasHub models, layer by layer."""


def copy_weights(source, target, renames=None):
    """Copy every weight-bearing layer of `target` from the layer of `source` of the same
    name (or `renames[target name]`)."""
    renames = renames or {}
    layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        name = renames.get(layer.name, layer.name)
        if name not in layers:
            raise ValueError(f"{source.name} has no layer {name} for {target.name}'s {layer.name}.")
        layer.set_weights(layers[name].get_weights())
