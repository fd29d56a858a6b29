"""An image `load_image` cannot decode as the reference does is an ImageError naming it."""

import numpy as np
import pytest
from PIL import Image

from hrnet_eval.data import Item
from hrnet_eval.decode import decode
from hrnet_eval.images import ImageError


def test_unfaithful_image_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "ILSVRC2012_val_00000001.JPEG"
    Image.fromarray(np.zeros((64, 64), "float32"), "F").save(path, format="TIFF")
    with pytest.raises(ImageError, match=f"Cannot decode image {path} as the reference does"):
        decode([Item(path.name, 0, str(path))])
    skipped = decode([Item(path.name, 0, str(path))], skip_corrupt=True)["skipped"]
    assert skipped[0][0] == str(path) and "mode F of a TIFF image" in skipped[0][1]
