"""TFRecord files as tensorflow-datasets writes ImageNet's validation split."""

import struct

from hrnet_eval.tfrecord import Example, masked_crc32c


def write_tfrecord(path, examples):
    """A TFRecord file of `examples` ([(jpeg bytes, label, file name)]), as tfds writes."""
    with open(path, "wb") as f:
        for image, label, name in examples:
            example = Example()
            feature = example.features.feature
            feature["image"].bytes_list.value.append(image)
            feature["label"].int64_list.value.append(label)
            feature["file_name"].bytes_list.value.append(name.encode())
            data = example.SerializeToString()
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))
