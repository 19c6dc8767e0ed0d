"""The README's Python examples run as written, in order, in a fresh directory."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)                  # bpfast.save writes xor.npz here
    namespace = {}
    for block in blocks:
        if "threadpool_limits" in block:
            pytest.importorskip("threadpoolctl")
        exec(compile(block, README, "exec"), namespace)
    assert namespace["same"].sizes == namespace["net"].sizes == [2, 4, 1]
    assert namespace["A"].shape == (4, 4) and namespace["E"].shape == (4, 2)
    assert namespace["clf"].score(namespace["X_test"], namespace["y_test"]) > 0.9
