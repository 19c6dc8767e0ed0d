"""save/load: atomic saves, bit-identical round trips, and every kind of bad file refused
with FileNotFoundError (missing) or ValueError (anything else wrong), never a crash."""
import io
import json
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
FORMATS = [1, 2]        # bpfast-network-1 (a field per setting), and -2 (save's, a JSON config)
# The settings: fields of their own in format 1, keys of the JSON 'config' field in format 2.
SETTINGS = ("format", "sizes", "activation", "output_activation", "loss", "dtype", "optimizer",
            "optimizer_step")


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


def fields_of(net, fmt=1):
    """What a model file of format `fmt` holds for `net`, a field per setting (as format 1
    stores them; members_of gathers them for format 2)."""
    return dict(format=np.array(f"bpfast-network-{fmt}"), sizes=np.array(net.sizes, dtype=np.int64),
                activation=np.array(net.activation), output_activation=np.array(net.output_activation),
                loss=np.array(net.loss), dtype=np.array(net.dtype.name), params=net.get_parameters())


def members_of(fields, fmt):
    """The .npz members that store `fields` in format `fmt`: the fields themselves in format
    1; in format 2 the settings gathered into the JSON text 'config', written first."""
    if fmt == 1:
        return dict(fields)
    members = {"config": np.array(json.dumps({k: fields[k].tolist() for k in SETTINGS
                                              if k in fields}))}
    members.update({k: v for k, v in fields.items() if k not in SETTINGS})
    return members


def write_npz(path, **fields):
    with open(path, "wb") as f:
        np.savez(f, **fields)


def write_model(path, fields, fmt):
    write_npz(path, **members_of(fields, fmt))


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


@pytest.mark.parametrize("fmt, key", [(1, "activation"), (2, "config"), (2, "params")])
def test_an_npz_with_pickled_objects_is_never_unpickled(tmp_path, fmt, key):
    net, _ = trained(sizes=(2, 2))
    members = members_of(fields_of(net, fmt), fmt)
    members[key] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, **members)
    assert_refused(path, key)


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
@pytest.mark.parametrize("fmt", FORMATS)
def test_fields_that_do_not_describe_a_valid_model(tmp_path, change, words, fmt):
    net, _ = trained()          # 3-5-4-2 float64, relu/softmax/cross_entropy
    fields = fields_of(net, fmt)
    fields.update(change)
    if isinstance(fields["params"], str):
        fields["params"] = net.get_parameters().astype(fields["params"])
    path = tmp_path / "m.npz"
    write_model(path, fields, fmt)
    assert_refused(path, *words)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_field(tmp_path, fmt):
    for key in ("sizes", "params", "loss", "dtype"):
        fields = fields_of(trained(sizes=(2, 2))[0], fmt)
        del fields[key]
        path = tmp_path / f"no-{key}.npz"
        write_model(path, fields, fmt)
        assert_refused(path, key)


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_finite_parameters(tmp_path, fmt):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net, fmt)
    fields["params"][1] = np.nan
    write_model(tmp_path / "m.npz", fields, fmt)
    assert_refused(tmp_path / "m.npz", "params", "NaN or infinity")


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


@pytest.mark.parametrize("fmt, key, shape, dtype, words", [
    (fmt, "params", shape, "<f8", words) for fmt in FORMATS for shape, words in [
        ((10 ** 12,), ["params", "shape"]),
        ((2 ** 62,), ["params", "shape"]),
        ((10 ** 6, 10 ** 6), ["params", "shape"]),
        ((6,), ["params", "truncated"])]] + [         # the right shape, too few bytes
    (1, "sizes", (10 ** 12,), "<i8", ["sizes", "announces"]),
    (1, "activation", (), "<U100000000", ["activation", "announces"]),
    (2, "config", (), "<U100000000", ["config", "announces"]),
    (2, "config", (10 ** 12,), "<U1", ["config", "string"]),
])
def test_a_header_announcing_a_huge_array_allocates_nothing(tmp_path, fmt, key, shape, dtype,
                                                            words):
    """A crafted header claiming terabytes over a few bytes of data is refused from the
    header, before any allocation (no MemoryError, no swap storm)."""
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    write_with_member(path, members_of(fields_of(net, fmt), fmt), key,
                      npy_bytes(shape, b"\0" * 40, dtype))
    assert_refused(path, *words)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_crafted_model_of_huge_sizes_allocates_nothing(tmp_path, fmt):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net, fmt)
    fields["sizes"] = np.array([2 ** 20, 2 ** 20, 2 ** 20])      # 2**41 parameters
    write_model(tmp_path / "m.npz", fields, fmt)
    assert_refused(tmp_path / "m.npz", "sizes")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_big_endian_params_are_converted(tmp_path, dtype, fmt):
    """Another writer's valid .npz: params stored big-endian; the values are what count."""
    net, X = trained(dtype, sizes=(2, 3, 2))
    fields = fields_of(net, fmt)
    fields["params"] = fields["params"].astype(fields["params"].dtype.newbyteorder(">"))
    write_model(tmp_path / "m.npz", fields, fmt)
    loaded = bpfast.load(tmp_path / "m.npz")
    assert loaded.get_parameters().dtype == np.dtype(dtype)           # native again
    assert np.array_equal(loaded.get_parameters(), net.get_parameters())
    assert np.array_equal(loaded.predict(X), net.predict(X))


@pytest.mark.parametrize("fmt", FORMATS)
def test_big_endian_params_of_the_other_width_are_refused(tmp_path, fmt):
    net, _ = trained("float64", sizes=(2, 3, 2))
    fields = fields_of(net, fmt)
    fields["params"] = fields["params"].astype(">f4")       # float32 values in a float64 model
    write_model(tmp_path / "m.npz", fields, fmt)
    assert_refused(tmp_path / "m.npz", "parameters")


@pytest.mark.parametrize("fmt", FORMATS)
def test_loading_a_compressed_npz_written_by_another_tool(tmp_path, fmt):
    net, X = trained(sizes=(2, 3, 2))
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **members_of(fields_of(net, fmt), fmt))
    assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))


# ============================================================== zip bombs
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tools"))
from zipbomb import write_bomb as bomb  # noqa: E402


@pytest.mark.parametrize("fmt, key", [(1, "params"), (1, "activation"), (1, "metadata"),
                                      (2, "params"), (2, "config"), (2, "metadata")])
def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path, fmt, key):
    """A ~200 KB file whose member inflates to 200 MB after a valid header: refused from
    the header and the zip directory, having inflated (and allocated) next to nothing."""
    import tracemalloc
    net, X = trained(sizes=(2, 3, 2))
    fields = fields_of(net, fmt)
    fields["metadata"] = np.array('{"note": "hello"}')
    path = tmp_path / "bomb.npz"
    bomb(path, members_of(fields, fmt), key, 200 * 2 ** 20)
    assert path.stat().st_size < 2 ** 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=key):
            bpfast.load(path, with_metadata=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2 ** 20, peak           # the member is 200 MB inflated


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_member_claiming_more_than_deflate_can_give_is_refused(tmp_path, fmt):
    """The zip directory may claim any uncompressed size; one beyond deflate's ~1032:1
    ratio over the compressed size is a lie, refused before inflating."""
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez_compressed(f, **members_of(fields_of(net, fmt), fmt))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("params.npy")
    # Patch the uncompressed size in the central directory entry of params.npy.
    name = b"params.npy"
    central = raw.rindex(b"PK\x01\x02", 0, raw.rindex(name))    # its central directory entry
    raw[central + 24:central + 28] = (info.compress_size * 5000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert_refused(path, "params", "compress")


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_compression_methods_are_refused(tmp_path, fmt):
    net, _ = trained(sizes=(2, 2))
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as z:
        for name, value in members_of(fields_of(net, fmt), fmt).items():
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
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_metadata_field_is_refused(tmp_path, field, words, fmt):
    net, _ = trained(sizes=(2, 2))
    fields = fields_of(net, fmt)
    fields["metadata"] = field
    write_model(tmp_path / "m.npz", fields, fmt)
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


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_crafted_optimizer_state_is_refused(tmp_path, fmt):
    net = bpfast.Network([2, 3, 1], seed=0)
    net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, optimizer="adam")
    fields = fields_of(net, fmt)
    fields.update(optimizer=np.array("adam"), optimizer_step=np.array(1),
                  optimizer_state=net._state.copy())
    good = tmp_path / "good.npz"
    write_model(good, fields, fmt)
    assert bpfast.load(good)._state_kind == "adam"
    for change, message in [({"optimizer": np.array("lbfgs")}, "must be one of"),
                            ({"optimizer_state": np.zeros(3)}, "does not fit"),
                            ({"optimizer_state": np.full(26, np.nan)}, "NaN"),
                            ({"optimizer_step": np.array(-1)}, "negative" if fmt == 1 else ">= 0"),
                            ({"optimizer_step": np.array(1.5)}, "integer")]:
        bad = tmp_path / "bad.npz"
        write_model(bad, {**fields, **change}, fmt)
        with pytest.raises(ValueError, match=message):
            bpfast.load(bad)


# ============================================================== formats
def test_save_writes_format_2_which_np_load_reads(tmp_path):
    net, X = trained(sizes=(3, 4, 2))
    net.fit(X, np.eye(2)[np.arange(30) % 2], epochs=1, optimizer="adam", keep_state=False)
    path = tmp_path / "m.npz"
    bpfast.save(net, path, metadata={"k": 1})
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["config.npy", "params.npy", "optimizer_state.npy",
                                "metadata.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    with np.load(path, allow_pickle=False) as z:
        config = json.loads(str(z["config"]))
        assert np.array_equal(z["params"], net.get_parameters())
        assert np.array_equal(z["optimizer_state"], net._state)
    settings = {key: net.config()[key] for key in SETTINGS[1:6]}   # what builds the network
    assert config == dict(settings, format="bpfast-network-2", optimizer="adam",
                          optimizer_step=net._state_step)


def test_a_file_of_format_1_written_by_the_previous_version_loads():
    """tests/data/model_format1.npz was written by bpfast.save before format 2 (commit
    e0243f5): a float32 3-5-2 tanh/softmax network trained with Adam, whose metadata
    holds inputs and what it predicted for them then."""
    path = pathlib.Path(__file__).parent / "data" / "model_format1.npz"
    with np.load(path, allow_pickle=False) as z:
        assert str(z["format"]) == "bpfast-network-1"
        stored = {key: z[key] for key in z.files}
    net, meta = bpfast.load(path, with_metadata=True)
    assert (net.sizes, net.activation, net.output_activation, net.loss, net.dtype.name) == \
        ([3, 5, 2], "tanh", "softmax", "cross_entropy", "float32")
    assert np.array_equal(net.get_parameters(), stored["params"])
    assert (net._state_kind, net._state_step) == ("adam", 12)
    assert np.array_equal(net._state, stored["optimizer_state"])
    X = np.array(meta["X"])
    assert net.predict(X).astype(float).tolist() == meta["predict"]
    # Saved again, it is a format-2 file of the same network, optimizer state included.
    again = bpfast.Network._from_parameters(net.get_parameters(), **{
        k: v for k, v in net.config().items() if k != "backend"}, backend="cython")
    assert np.array_equal(again.predict(X), net.predict(X))


def test_a_format_1_file_resaved_trains_on_identically(tmp_path):
    path = pathlib.Path(__file__).parent / "data" / "model_format1.npz"
    old = bpfast.load(path)
    bpfast.save(old, tmp_path / "new.npz")
    with zipfile.ZipFile(tmp_path / "new.npz") as z:
        assert "config.npy" in z.namelist() and "format.npy" not in z.namelist()
    new = bpfast.load(tmp_path / "new.npz")
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, 16)
    for n in (old, new):
        n.fit(X, y, epochs=2, batch_size=4, optimizer="adam", lr=0.05, seed=4, keep_state=True)
    assert np.array_equal(old.get_parameters(), new.get_parameters())


def with_config(path, fmt=2, **change):
    """A format-2 file of a small model whose JSON config is changed: a key set to a value,
    or removed (the value `...`)."""
    fields = fields_of(trained(sizes=(2, 3, 2))[0], fmt)
    members = members_of(fields, 2)
    config = json.loads(str(members["config"]))
    for key, value in change.items():
        if value is ...:
            del config[key]
        else:
            config[key] = value
    members["config"] = np.array(json.dumps(config))
    write_npz(path, **members)
    return path


@pytest.mark.parametrize("change, words", [
    (dict(format=...), ["not a bpfast model"]),
    (dict(format="bpfast-network-1"), ["not a bpfast model", "bpfast-network-2"]),
    (dict(activation=...), ["config", "lacks", "activation"]),
    (dict(loss=..., dtype=...), ["config", "lacks", "dtype", "loss"]),
    (dict(extra=1), ["config", "unknown", "extra"]),
    (dict(sizes=[2, True, 2]), ["config", "sizes"]),
    (dict(sizes=[2, 3.0, 2]), ["config", "sizes"]),
    (dict(sizes="2,3,2"), ["config", "sizes"]),
    (dict(sizes=[2] * (2 ** 16 + 1)), ["config", "sizes", "65536"]),
    (dict(sizes=[2, 2 ** 31, 2]), ["parameters", "sizes"]),
    (dict(dtype=None), ["config", "dtype", "string"]),
    (dict(loss=["mse"]), ["config", "loss", "string"]),
    (dict(optimizer="adam"), ["config", "optimizer_step"]),
    (dict(optimizer_step=3), ["config", "optimizer"]),
    (dict(optimizer="adam", optimizer_step=True), ["config", "optimizer_step", "integer"]),
])
def test_a_config_that_does_not_describe_a_valid_model(tmp_path, change, words):
    assert_refused(with_config(tmp_path / "m.npz", **change), *words)


@pytest.mark.parametrize("text, words", [
    ("{not json", ["config", "JSON"]), ("[1, 2]", ["config", "object"]),
    ('"bpfast-network-2"', ["config", "object"]), ("", ["config", "JSON"]),
])
def test_a_config_that_is_no_json_object(tmp_path, text, words):
    net, _ = trained(sizes=(2, 2))
    members = members_of(fields_of(net, 2), 2)
    members["config"] = np.array(text)
    write_npz(tmp_path / "m.npz", **members)
    assert_refused(tmp_path / "m.npz", *words)


@pytest.mark.parametrize("arr", [
    np.zeros(17), np.zeros(0), np.zeros(()), np.zeros((3, 4), dtype=">f4"),
    np.zeros((3, 4), order="F"), np.zeros((2, 1, 0, 5), dtype=np.int8), np.array("relu"),
    np.array("é" * 1000), np.array([True, False]), np.zeros((10 ** 5,), dtype=np.uint16),
    np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")]), np.array(5, dtype="M8[ns]"),
], ids=lambda a: f"{a.dtype.str}{a.shape}{'F' if a.flags.f_contiguous and a.ndim > 1 else ''}")
def test_npy_headers_are_read_as_numpy_reads_them(arr):
    """load's own reading of NumPy's header (its fast path) gives what NumPy's parser gives,
    and headers it does not recognise (a structured dtype, a datetime) go to that parser."""
    from bpfast.io import _npy_header
    buf = io.BytesIO()
    np.save(buf, arr)
    raw = buf.getvalue()
    buf.seek(0)
    assert np.lib.format.read_magic(buf) == (1, 0)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    assert _npy_header(raw, "x") == (shape, fortran, dtype, buf.tell())


@pytest.mark.parametrize("spelling", ["version 2.0", "double quotes", "other order"])
def test_a_model_with_npy_headers_spelled_otherwise_loads(tmp_path, spelling):
    net, X = trained(sizes=(2, 3, 2))
    members = members_of(fields_of(net, 2), 2)
    params = net.get_parameters()
    buf = io.BytesIO()
    if spelling == "version 2.0":
        np.lib.format.write_array(buf, params, version=(2, 0))
    else:
        header = ({"descr": "<f8", "fortran_order": False, "shape": params.shape}
                  if spelling == "double quotes" else
                  "{'shape': (%d,), 'fortran_order': False, 'descr': '<f8'}" % params.size)
        text = (json.dumps({**header, "shape": list(header["shape"])}).replace("[", "(")
                .replace("]", ",)").replace("false", "False") if isinstance(header, dict)
                else header)
        text += " " * (-(len(text) + 11) % 64) + "\n"
        buf.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1"))
        buf.write(params.astype("<f8").tobytes())
    path = tmp_path / "m.npz"
    write_with_member(path, members, "params", buf.getvalue())
    with np.load(path) as z:
        assert np.array_equal(z["params"], params)        # NumPy reads it too
    assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))


def stored_file(tmp_path):
    """A saved model's path, its bytes to damage, and the zip entry of its parameters."""
    _, _, good, path = saved_bytes(tmp_path)
    path.write_bytes(good)
    raw = bytearray(good)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("params.npy")
    return path, raw, info


def test_a_stored_member_whose_bytes_changed_is_refused_by_its_crc(tmp_path):
    path, raw, info = stored_file(tmp_path)
    raw[info.header_offset + 30 + len("params.npy") + 128 + 5] ^= 0x01    # a parameter's bit
    path.write_bytes(bytes(raw))
    assert_refused(path, "params", "CRC")


def test_a_local_header_naming_another_member_is_refused(tmp_path):
    path, raw, info = stored_file(tmp_path)
    at = info.header_offset + 30
    assert raw[at:at + 10] == b"params.npy"
    raw[at:at + 10] = b"config.npy"
    path.write_bytes(bytes(raw))
    assert_refused(path, "params", "names another member")


@pytest.mark.parametrize("fmt", FORMATS)
def test_files_too_big_to_read_whole_are_read_through_the_file(tmp_path, monkeypatch, fmt):
    """Files over io._READ_WHOLE bytes are read member by member from the file: the same
    checks, the same refusals (here with the limit at 0, so every file goes that way)."""
    monkeypatch.setattr(bpfast.io, "_READ_WHOLE", 0)
    net, X = trained(sizes=(3, 4, 2))
    path = tmp_path / "m.npz"
    write_model(path, fields_of(net, fmt), fmt)
    assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))
    raw = path.read_bytes()
    for cut in range(0, len(raw), 17):
        path.write_bytes(raw[:cut])
        assert_refused(path)
    fields = fields_of(net, fmt)
    bomb(path, members_of(fields, fmt), "params", 50 * 2 ** 20)
    assert_refused(path, "params")


def test_a_big_model_round_trip():
    """Over io._READ_WHOLE (1 MiB): a 500-300-2 float64 network's file is 1.2 MB."""
    import tempfile
    net = bpfast.Network([500, 300, 2], activation="relu", output_activation="identity", seed=4)
    X = np.random.default_rng(0).normal(size=(5, 500))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.npz")
        bpfast.save(net, path)
        assert os.path.getsize(path) > bpfast.io._READ_WHOLE
        assert np.array_equal(bpfast.load(path).predict(X), net.predict(X))


def test_load_refuses_a_file_that_is_no_regular_file(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    import threading
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    net, _ = trained(sizes=(2, 2))
    bpfast.save(net, tmp_path / "m.npz")
    content = (tmp_path / "m.npz").read_bytes()

    def writer():
        with open(fifo, "wb", buffering=0) as f:     # unbuffered: the write fails here
            try:
                f.write(content)
            except BrokenPipeError:                 # load gave up before reading it all
                pass

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(ValueError, match="pipe.npz"):     # a pipe cannot seek
            bpfast.load(fifo)
    finally:
        thread.join(timeout=10)


# ============================================================== the Network load builds
def test_from_parameters_is_the_constructor_and_set_parameters():
    params = trained(sizes=(3, 5, 2))[0].get_parameters()
    settings = dict(sizes=[3, 5, 2], activation="relu", output_activation="softmax",
                    loss="cross_entropy", dtype="float64")
    for backend in BACKENDS:
        built = bpfast.Network(**settings, backend=backend, seed=None)
        built.set_parameters(params)
        net = bpfast.Network._from_parameters(params.astype(">f8"), **settings, backend=backend)
        assert net.config() == built.config() and net.seed is None
        assert net.get_parameters().dtype == np.float64
        assert np.array_equal(net.get_parameters(), params)
        X = np.random.default_rng(1).normal(size=(4, 3))
        assert np.array_equal(net.predict(X), built.predict(X))
        assert [w.shape for w in net.grad_weights] == [(3, 5), (5, 2)]
    bad = params.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        bpfast.Network._from_parameters(bad, **settings, backend="cython")
    with pytest.raises(ValueError, match="shape"):
        bpfast.Network._from_parameters(params[:-1], **settings, backend="cython")
    # Another width or kind goes through set_parameters' checks: cast, then finite.
    narrow = bpfast.Network._from_parameters(params, **dict(settings, dtype="float32"),
                                             backend="reference")
    assert np.array_equal(narrow.get_parameters(), params.astype(np.float32))
    assert bpfast.Network._from_parameters(params, **settings, backend="cython",
                                           n_threads=1).n_threads == 1
    ints = bpfast.Network._from_parameters(np.arange(params.size), **settings, backend="cython")
    assert np.array_equal(ints.get_parameters(), np.arange(params.size))
    with pytest.raises(ValueError, match="too large for float32"):
        bpfast.Network._from_parameters(np.full(params.size, 1e300), **dict(
            settings, dtype="float32"), backend="cython", name="field 'params'")
    with pytest.raises(ValueError, match="activation"):
        bpfast.Network._from_parameters(params, **dict(settings, activation="swish"),
                                        backend="cython")


def test_a_loaded_network_pickles_and_its_copy_trains_on_identically(tmp_path):
    net, X = trained()
    bpfast.save(net, tmp_path / "m.npz")
    loaded = bpfast.load(tmp_path / "m.npz")
    copy = pickle.loads(pickle.dumps(loaded))
    Y = np.eye(2)[np.arange(30) % 2]
    a = loaded.fit(X, Y, epochs=2).loss          # the default seed: from each generator
    b = copy.fit(X, Y, epochs=2).loss
    assert a == b and np.array_equal(loaded.get_parameters(), copy.get_parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dropped_network_is_freed_at_once(tmp_path, backend):
    """No reference cycle: a Network and its buffers go when its last reference does,
    without waiting for the garbage collector (here switched off)."""
    import gc
    import weakref
    net, X = trained(backend=backend, sizes=(3, 4, 2))
    bpfast.save(net, tmp_path / "m.npz")
    gc.disable()
    try:
        for make in (lambda: bpfast.Network([3, 4, 2], backend=backend),
                     lambda: bpfast.load(tmp_path / "m.npz", backend=backend)):
            net = make()
            net.fit(X, np.eye(2)[np.arange(30) % 2], epochs=1)
            weights = net.weights
            ref = weakref.ref(net)
            del net
            assert ref() is None
            weights[0] = np.ones((3, 4))     # lists that outlive it still hold its arrays
            assert weights[0].sum() == 12
    finally:
        gc.enable()
