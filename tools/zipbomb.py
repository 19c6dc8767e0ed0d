"""A hostile model file for the tests and benchmarks of ``bpfast.load``.

``write_bomb(path, fields, key, extra_bytes)`` writes an .npz whose member ``key`` is
its valid .npy followed by ``extra_bytes`` zeros, deflated: a small file that inflates to
far more than its header announces.
"""
import io
import zipfile

import numpy as np


def write_bomb(path, fields, key, extra_bytes):
    zero_mb = bytes(2 ** 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, value in fields.items():
            b = io.BytesIO()
            np.save(b, value)
            with z.open(name + ".npy", "w", force_zip64=True) as member:
                member.write(b.getvalue())
                if name == key:
                    for _ in range(extra_bytes // len(zero_mb)):
                        member.write(zero_mb)
