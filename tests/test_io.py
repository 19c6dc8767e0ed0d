"""save/load: atomic saves, bit-identical round trips, and every kind of bad file refused
with FileNotFoundError (missing) or ValueError (anything else wrong), never a crash."""
import io
import os
import pathlib
import pickle
import stat
import sys
import zipfile

import numpy as np
import pytest

import bpfast

BACKENDS = ["cython", "reference"]
DTYPES = ["float64", "float32"]


def trained(dtype="float64", backend="cython", sizes=(3, 5, 4, 2), **kw):
    kw.setdefault("activation", "relu")
    kw.setdefault("output_activation", "softmax")
    kw.setdefault("loss", "cross_entropy")
    net = bpfast.Network(list(sizes), dtype=dtype, backend=backend, seed=2, **kw)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 30)]
    net.fit(X, Y, epochs=3, batch_size=8, lr=0.1, seed=1)
    return net, X


@pytest.fixture
def saved(tmp_path):
    """A trained network saved as tmp_path/m.npz: (path, network, its inputs X, the file's bytes)."""
    path = tmp_path / "m.npz"
    net, X = trained()
    bpfast.save(net, path)
    return path, net, X, path.read_bytes()


def listing(directory):
    return sorted(p.name for p in pathlib.Path(directory).iterdir())


def fields_of(net):
    return dict(format=np.array("bpfast-network-1"), sizes=np.array(net.sizes, dtype=np.int64),
                activation=np.array(net.activation), output_activation=np.array(net.output_activation),
                loss=np.array(net.loss), dtype=np.array(net.dtype.name), params=net.get_parameters())


def write_npz(path, **fields):
    with open(path, "wb") as f:
        np.savez(f, **fields)


# ============================================================== round trips
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_predicts_bit_identically(tmp_path, dtype, backend):
    net, X = trained(dtype, backend)
    path = tmp_path / "model.npz"
    bpfast.save(net, path)
    loaded = bpfast.load(path, backend=backend)
    assert (loaded.sizes, loaded.activation, loaded.output_activation, loaded.loss, loaded.dtype,
            loaded.backend) == (net.sizes, net.activation, net.output_activation, net.loss,
                                net.dtype, backend)
    assert np.array_equal(loaded.get_parameters(), net.get_parameters())
    assert loaded.get_parameters().dtype == net.dtype
    assert np.array_equal(loaded.predict(X), net.predict(X))
    assert np.array_equal(loaded.forward(X[:3]), net.forward(X[:3]))
    assert loaded.evaluate(X, net.predict(X)) == net.evaluate(X, net.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_model_moves_between_backends(tmp_path, dtype):
    net, X = trained(dtype, "cython")
    bpfast.save(net, tmp_path / "m.npz")
    slow = bpfast.load(tmp_path / "m.npz", backend="reference")
    assert slow.backend == "reference"
    assert np.array_equal(slow.get_parameters(), net.get_parameters())
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(slow.predict(X), net.predict(X), **tol)


def test_training_continues_identically_after_a_round_trip(tmp_path):
    net, X = trained()
    Y = np.eye(2)[np.arange(30) % 2]
    bpfast.save(net, tmp_path / "m")
    loaded = bpfast.load(tmp_path / "m")
    a = net.fit(X, Y, epochs=2, seed=5).loss
    b = loaded.fit(X, Y, epochs=2, seed=5).loss
    assert a == b and np.array_equal(net.get_parameters(), loaded.get_parameters())


class MyPath:
    def __init__(self, p):
        self.p = p

    def __fspath__(self):
        return self.p


@pytest.mark.parametrize("kind", ["str", "pathlib", "bytes", "fspath", "no-suffix", "unicode"])
def test_path_like_objects(tmp_path, kind):
    net, X = trained(sizes=(2, 3, 2))
    name = {"no-suffix": "model", "unicode": "modèle-ß.npz"}.get(kind, "model.npz")
    target = tmp_path / name
    path = {"str": str(target), "pathlib": target, "bytes": os.fsencode(target),
            "fspath": MyPath(str(target))}.get(kind, target)
    bpfast.save(net, path)
    assert listing(tmp_path) == [name]          # no suffix added, no temp file left
    assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))


def test_relative_path_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net, X = trained(sizes=(2, 2))
    bpfast.save(net, "m.npz")
    assert np.array_equal(bpfast.load("m.npz").predict(X), net.predict(X))


def test_save_overwrites_and_keeps_permissions(tmp_path):
    path = tmp_path / "m.npz"
    old, _ = trained(sizes=(2, 2))
    new, X = trained(sizes=(2, 3, 2))
    bpfast.save(old, path)
    os.chmod(path, 0o640)
    bpfast.save(new, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert bpfast.load(path).sizes == [2, 3, 2]
    assert listing(tmp_path) == ["m.npz"]


def test_a_new_file_gets_the_umask_permissions_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        bpfast.save(trained(sizes=(2, 2))[0], tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o644


def test_save_refuses_what_is_not_a_network(tmp_path):
    with pytest.raises(TypeError, match="net"):
        bpfast.save({"sizes": [2, 1]}, tmp_path / "m.npz")
    with pytest.raises(TypeError):
        bpfast.save(trained(sizes=(2, 2))[0], 12.5)
    assert listing(tmp_path) == []


def test_save_into_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        bpfast.save(trained(sizes=(2, 2))[0], tmp_path / "no" / "m.npz")
    assert listing(tmp_path) == []


# ============================================================== atomic save
def interrupted(monkeypatch, where, exc):
    """Make one step of save fail after part of the file was written."""
    if where == "savez":
        real = np.savez

        def savez(f, **fields):
            real(f, **fields)
            f.seek(0)
            f.truncate(100)           # half-written, then the failure
            raise exc
        monkeypatch.setattr(np, "savez", savez)
    elif where == "fsync":
        def fsync(fd):
            raise exc
        monkeypatch.setattr(os, "fsync", fsync)
    elif where == "replace":
        def replace(src, dst):
            raise exc
        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("where", ["savez", "fsync", "replace"])
@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_save_leaves_the_previous_file_intact_and_no_temp_file(tmp_path, monkeypatch,
                                                                              saved, where, exc):
    path, old, X, before = saved
    new, _ = trained(sizes=(3, 2), activation="tanh")
    with monkeypatch.context() as m:
        interrupted(m, where, exc)
        with pytest.raises(type(exc)):
            bpfast.save(new, path)
    assert listing(tmp_path) == ["m.npz"]
    assert path.read_bytes() == before
    assert np.array_equal(bpfast.load(path).predict(X), old.predict(X))


@pytest.mark.parametrize("where", ["savez", "replace"])
def test_an_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch, where):
    with monkeypatch.context() as m:
        interrupted(m, where, OSError(5, "I/O error"))
        with pytest.raises(OSError):
            bpfast.save(trained(sizes=(2, 2))[0], tmp_path / "m.npz")
    assert listing(tmp_path) == []


def test_the_file_is_complete_before_it_is_renamed(tmp_path, monkeypatch):
    """When os.replace runs, the temporary file already holds the whole, loadable model."""
    net, X = trained()
    seen = {}
    real = os.replace

    def replace(src, dst):
        seen["src"], seen["dst"] = src, dst
        seen["model"] = bpfast.load(src)
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    bpfast.save(net, tmp_path / "m.npz")
    assert os.path.dirname(seen["src"]) == str(tmp_path)        # same file system
    assert seen["dst"] == str(tmp_path / "m.npz")
    assert np.array_equal(seen["model"].predict(X), net.predict(X))


# ============================================================== bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        bpfast.load(tmp_path / "nope.npz")


def test_a_directory_is_not_a_model(tmp_path):
    with pytest.raises(IsADirectoryError):
        bpfast.load(tmp_path)


@pytest.mark.parametrize("kw, exc, name", [
    (dict(backend="fortran"), ValueError, "backend"), (dict(backend=None), TypeError, "backend"),
    (dict(with_metadata="yes"), TypeError, "with_metadata")])
def test_bad_load_arguments_are_refused_naming_them(tmp_path, kw, exc, name):
    bpfast.save(trained(sizes=(2, 2))[0], tmp_path / "m.npz")
    with pytest.raises(exc, match=name):
        bpfast.load(tmp_path / "m.npz", **kw)


def assert_refused(path, *words):
    with pytest.raises(ValueError) as info:
        bpfast.load(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def saved_bytes(tmp_path):
    """A small trained model's file: (net, X, its bytes, a path to write damaged copies to)."""
    net, X = trained(sizes=(3, 4, 2))
    good = tmp_path / "good.npz"
    bpfast.save(net, good)
    return net, X, good.read_bytes(), tmp_path / "bad.npz"


def test_truncated_files_at_every_length(tmp_path):
    net, _, raw, bad = saved_bytes(tmp_path)
    for cut in sorted(set(range(0, len(raw), max(1, len(raw) // 97))) | {len(raw) - 1, 1, 22}):
        bad.write_bytes(raw[:cut])
        assert_refused(bad)


def test_every_single_byte_corruption_is_refused_or_harmless(tmp_path):
    net, X, raw, bad = saved_bytes(tmp_path)
    want = net.predict(X)
    loaded = 0
    for i in range(0, len(raw), 3):
        b = bytearray(raw)
        b[i] ^= 0x5A
        bad.write_bytes(bytes(b))
        try:
            model = bpfast.load(bad)
        except ValueError:
            continue
        loaded += 1      # a flip in zip metadata the reader ignores (a timestamp, say)
        assert np.array_equal(model.predict(X), want), i
    assert loaded < len(raw) // 3 // 2


@pytest.mark.parametrize("content", [b"", b"\x00", os.urandom(1000), b"PK\x03\x04" + os.urandom(200),
                                     pickle.dumps({"sizes": [2, 1]}), b"hello world\n" * 50],
                         ids=["empty", "nul", "random", "zip-magic", "pickle", "text"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    assert_refused(path)


def test_a_foreign_npz(tmp_path):
    path = tmp_path / "weights.npz"
    write_npz(path, W=np.ones((3, 2)), b=np.zeros(2))
    assert_refused(path, "not a bpfast model")


def test_a_plain_npy(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones(3))
    assert_refused(path)


def test_a_zip_of_something_else(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_refused(path, "not a bpfast model")


def test_an_npz_with_pickled_objects_is_never_unpickled(tmp_path):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net)
    fields["activation"] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, **fields)
    assert_refused(path, "activation")


@pytest.mark.parametrize("change, words", [
    (dict(format=np.array("bpfast-network-0")), ["not a bpfast model"]),
    (dict(format=np.array([1, 2])), ["format"]),
    (dict(params=np.zeros(5)), ["parameters", "shape"]),
    (dict(params=np.zeros((4, 4))), ["parameters"]),
    (dict(params="float32"), ["parameters"]),
    (dict(sizes=np.array([3, 2, 2])), ["parameters", "sizes"]),
    (dict(sizes=np.array([3.0, 4.0, 2.0])), ["sizes"]),
    (dict(sizes=np.array([[3, 4, 2]])), ["sizes"]),
    (dict(sizes=np.array([3])), ["sizes"]),
    (dict(sizes=np.array([3, 0, 2])), ["sizes"]),
    (dict(sizes=np.array([3, -4, 2])), ["sizes"]),
    (dict(sizes=np.array(["3", "4", "2"])), ["sizes"]),
    (dict(dtype=np.array("float16")), ["dtype"]),
    (dict(dtype=np.array(8)), ["dtype"]),
    (dict(activation=np.array("swish")), ["activation"]),
    (dict(activation=np.array(["relu", "relu"])), ["activation"]),
    (dict(output_activation=np.array("sigmoid")), ["cross_entropy"]),
    (dict(loss=np.array("hinge")), ["loss"]),
])
def test_fields_that_do_not_describe_a_valid_model(tmp_path, change, words):
    net, _ = trained()          # 3-5-4-2 float64, relu/softmax/cross_entropy
    fields = fields_of(net)
    fields.update(change)
    if isinstance(fields["params"], str):
        fields["params"] = net.get_parameters().astype(fields["params"])
    path = tmp_path / "m.npz"
    write_npz(path, **fields)
    assert_refused(path, *words)


def test_missing_field(tmp_path):
    for key in ("sizes", "params", "loss", "dtype"):
        fields = fields_of(trained(sizes=(2, 2))[0])
        del fields[key]
        path = tmp_path / f"no-{key}.npz"
        write_npz(path, **fields)
        assert_refused(path, key)


def test_non_finite_parameters(tmp_path):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net)
    fields["params"][1] = np.nan
    write_npz(tmp_path / "m.npz", **fields)
    assert_refused(tmp_path / "m.npz", "finite")


def npy_bytes(header_shape, data_bytes, dtype="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buf.getvalue() + data_bytes


def write_with_member(path, fields, key, member_bytes):
    """An .npz of `fields` whose member `key` is replaced by raw .npy bytes."""
    with zipfile.ZipFile(path, "w") as z:
        for name, value in fields.items():
            b = io.BytesIO()
            np.save(b, value)
            z.writestr(name + ".npy", b.getvalue() if name != key else member_bytes)


@pytest.mark.parametrize("key, shape, dtype, words", [
    ("params", (10 ** 12,), "<f8", ["params", "shape"]),
    ("params", (2 ** 62,), "<f8", ["params", "shape"]),
    ("params", (10 ** 6, 10 ** 6), "<f8", ["params", "shape"]),
    ("params", (6,), "<f8", ["params", "truncated"]),       # the right shape, too few bytes
    ("sizes", (10 ** 12,), "<i8", ["sizes", "announces"]),
    ("activation", (), "<U100000000", ["activation", "announces"]),
])
def test_a_header_announcing_a_huge_array_allocates_nothing(tmp_path, key, shape, dtype, words):
    """A crafted header claiming terabytes over a few bytes of data is refused from the
    header, before any allocation (no MemoryError, no swap storm)."""
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    write_with_member(path, fields_of(net), key, npy_bytes(shape, b"\0" * 40, dtype))
    assert_refused(path, *words)


def test_a_crafted_model_of_huge_sizes_allocates_nothing(tmp_path):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net)
    fields["sizes"] = np.array([2 ** 20, 2 ** 20, 2 ** 20])      # 2**41 parameters
    write_npz(tmp_path / "m.npz", **fields)
    assert_refused(tmp_path / "m.npz", "sizes")


@pytest.mark.parametrize("dtype", DTYPES)
def test_big_endian_params_are_converted(tmp_path, dtype):
    """Another writer's valid .npz: params stored big-endian; the values are what count."""
    net, X = trained(dtype, sizes=(2, 3, 2))
    fields = fields_of(net)
    fields["params"] = fields["params"].astype(fields["params"].dtype.newbyteorder(">"))
    write_npz(tmp_path / "m.npz", **fields)
    loaded = bpfast.load(tmp_path / "m.npz")
    assert loaded.get_parameters().dtype == np.dtype(dtype)           # native again
    assert np.array_equal(loaded.get_parameters(), net.get_parameters())
    assert np.array_equal(loaded.predict(X), net.predict(X))


def test_big_endian_params_of_the_other_width_are_refused(tmp_path):
    net, _ = trained("float64", sizes=(2, 3, 2))
    fields = fields_of(net)
    fields["params"] = fields["params"].astype(">f4")       # float32 values in a float64 model
    write_npz(tmp_path / "m.npz", **fields)
    assert_refused(tmp_path / "m.npz", "parameters")


def test_loading_a_compressed_npz_written_by_another_tool(tmp_path):
    net, X = trained(sizes=(2, 3, 2))
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **fields_of(net))
    assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))


# ============================================================== zip bombs
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tools"))
from zipbomb import write_bomb as bomb  # noqa: E402


@pytest.mark.parametrize("key", ["params", "activation", "metadata"])
def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path, key):
    """A ~200 KB file whose member inflates to 200 MB after a valid header: refused from
    the header and the zip directory, having inflated (and allocated) next to nothing."""
    import tracemalloc
    net, X = trained(sizes=(2, 3, 2))
    fields = fields_of(net)
    fields["metadata"] = np.array('{"note": "hello"}')
    path = tmp_path / "bomb.npz"
    bomb(path, fields, key, 200 * 2 ** 20)
    assert path.stat().st_size < 2 ** 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=key):
            bpfast.load(path, with_metadata=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2 ** 20, peak           # the member is 200 MB inflated


def test_a_member_claiming_more_than_deflate_can_give_is_refused(tmp_path):
    """The zip directory may claim any uncompressed size; one beyond deflate's ~1032:1
    ratio over the compressed size is a lie, refused before inflating."""
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **fields_of(net))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("params.npy")
    # Patch the uncompressed size in the central directory entry of params.npy.
    name = b"params.npy"
    central = raw.rindex(b"PK\x01\x02", 0, raw.rindex(name))    # its central directory entry
    raw[central + 24:central + 28] = (info.compress_size * 5000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert_refused(path, "params", "compress")


def test_other_compression_methods_are_refused(tmp_path):
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as z:
        for name, value in fields_of(net).items():
            b = io.BytesIO()
            np.save(b, value)
            z.writestr(name + ".npy", b.getvalue())
    assert_refused(path, "compression method")


# ============================================================== what save refuses
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_save_refuses_non_finite_parameters_and_keeps_the_old_file(tmp_path, saved, bad):
    path, _, _, before = saved
    broken, _ = trained()
    broken.biases[1][0] = bad             # in place: nothing checks this write
    with pytest.raises(ValueError, match="NaN or infinity"):
        bpfast.save(broken, path)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["m.npz"]
    with pytest.raises(ValueError, match="NaN or infinity"):
        bpfast.save(broken, tmp_path / "new.npz")
    assert listing(tmp_path) == ["m.npz"]


# ============================================================== symbolic links
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
@pytest.mark.parametrize("relative", [False, True])
def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, relative):
    store = tmp_path / "store"
    links = tmp_path / "links"
    store.mkdir()
    links.mkdir()
    old, _ = trained(sizes=(2, 2))
    new, X = trained(sizes=(2, 3, 2))
    bpfast.save(old, store / "model-v1.npz")
    os.chmod(store / "model-v1.npz", 0o640)
    link = links / "current.npz"
    link.symlink_to(os.path.relpath(store / "model-v1.npz", links) if relative
                    else store / "model-v1.npz")
    target_before = os.readlink(link)
    bpfast.save(new, link)
    assert link.is_symlink() and os.readlink(link) == target_before
    assert listing(links) == ["current.npz"] and listing(store) == ["model-v1.npz"]
    assert bpfast.load(store / "model-v1.npz").sizes == [2, 3, 2]
    assert np.array_equal(bpfast.load(link).predict(X), new.predict(X))
    assert stat.S_IMODE(os.stat(store / "model-v1.npz").st_mode) == 0o640


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "m.npz"
    link.symlink_to(tmp_path / "real.npz")
    net, X = trained(sizes=(2, 2))
    bpfast.save(net, link)
    assert link.is_symlink() and listing(tmp_path) == ["m.npz", "real.npz"]
    assert np.array_equal(bpfast.load(tmp_path / "real.npz").predict(X), net.predict(X))


# ============================================================== metadata
def test_metadata_round_trip_in_the_same_file(tmp_path):
    net, X = trained()
    meta = {"task": "classify", "classes": ["no", "yes"], "mean": [0.5, -1.25e-300],
            "nested": {"k": [1, None, True, "é ✓"]}, "n": 3}
    bpfast.save(net, tmp_path / "m.npz", metadata=meta)
    assert listing(tmp_path) == ["m.npz"]
    loaded, got = bpfast.load(tmp_path / "m.npz", with_metadata=True)
    assert got == meta
    assert np.array_equal(loaded.predict(X), net.predict(X))
    # the plain call gives the Network alone; np.load reads the field without pickles
    assert isinstance(bpfast.load(tmp_path / "m.npz"), bpfast.Network)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        import json
        assert json.loads(str(z["metadata"])) == meta


def test_a_file_without_metadata_and_a_file_from_before_metadata(tmp_path):
    net, X = trained()
    bpfast.save(net, tmp_path / "plain.npz")
    write_npz(tmp_path / "old.npz", **fields_of(net))      # what save wrote before metadata
    for name in ("plain.npz", "old.npz"):
        loaded, meta = bpfast.load(tmp_path / name, with_metadata=True)
        assert meta is None
        assert np.array_equal(loaded.predict(X), net.predict(X))
        assert np.array_equal(bpfast.load(tmp_path / name).predict(X), net.predict(X))


@pytest.mark.parametrize("meta, exc", [
    ([1, 2], TypeError), ("text", TypeError), ({"f": object()}, TypeError),
    ({"x": float("nan")}, ValueError), ({"x": [1.0, float("inf")]}, ValueError),
    ({"big": "x" * (4 * 2 ** 20)}, ValueError),
])
def test_metadata_that_cannot_be_stored_is_refused_before_writing(tmp_path, saved, meta, exc):
    path, _, _, before = saved
    with pytest.raises(exc, match="metadata"):
        bpfast.save(trained(sizes=(2, 3, 2))[0], path, metadata=meta)
    assert path.read_bytes() == before and listing(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("field, words", [
    (np.array("{not json"), ["metadata", "JSON"]),
    (np.array("[1, 2]"), ["metadata", "object"]),
    (np.array([1, 2]), ["metadata", "string"]),
])
def test_a_bad_metadata_field_is_refused(tmp_path, field, words):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net)
    fields["metadata"] = field
    write_npz(tmp_path / "m.npz", **fields)
    with pytest.raises(ValueError) as info:
        bpfast.load(tmp_path / "m.npz", with_metadata=True)
    assert all(w in str(info.value) for w in words), info.value
    bpfast.load(tmp_path / "m.npz")            # the Network alone never reads it


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rprop"])
def test_the_optimizer_state_is_saved_and_training_continues_bit_for_bit(tmp_path, optimizer):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    net = bpfast.Network([3, 4, 2], activation="tanh", output_activation="identity", seed=1)
    kw = dict(batch_size=20 if optimizer == "rprop" else 5, lr=0.01, optimizer=optimizer,
              momentum=0.9 if optimizer == "sgd" else 0.0, seed=2)
    net.fit(X, Y, epochs=3, **kw)
    bpfast.save(net, tmp_path / "m.npz")
    back = bpfast.load(tmp_path / "m.npz")
    assert back._state_kind == optimizer and back._state_step == net._state_step
    assert np.array_equal(back._state, net._state)
    for n in (net, back):
        n.fit(X, Y, epochs=2, keep_state=True, **kw)
    assert np.array_equal(back.get_parameters(), net.get_parameters())


def test_a_file_without_optimizer_state_loads_with_none(tmp_path):
    net = bpfast.Network([2, 3, 1], seed=0)
    bpfast.save(net, tmp_path / "m.npz")
    import zipfile
    assert "optimizer_state.npy" not in zipfile.ZipFile(tmp_path / "m.npz").namelist()
    back = bpfast.load(tmp_path / "m.npz")
    assert back._state_kind is None and not back._state.any()


def test_a_crafted_optimizer_state_is_refused(tmp_path):
    net = bpfast.Network([2, 3, 1], seed=0)
    net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, optimizer="adam")
    good = tmp_path / "good.npz"
    bpfast.save(net, good)
    fields = dict(np.load(good))
    for change, message in [({"optimizer": np.array("lbfgs")}, "must be one of"),
                            ({"optimizer_state": np.zeros(3)}, "does not fit"),
                            ({"optimizer_state": np.full(26, np.nan)}, "NaN"),
                            ({"optimizer_step": np.array(-1)}, "negative")]:
        bad = tmp_path / "bad.npz"
        np.savez(bad, **{**fields, **change})
        with pytest.raises(ValueError, match=message):
            bpfast.load(bad)
