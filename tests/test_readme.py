"""The README's tour runs as written, each block on exactly the install the README names for it.

The README's first set-up command installs bpfast (``pip install .``, perhaps with extras);
a tour block that needs more says so in the text just above it, as
``Needs `pip install ".[peers]"` `` (the word "needs", then the command in backticks).
From pyproject.toml's dependencies and extras, and from what those packages require in
turn (their installed metadata), the test works out which distributions each block's
install brings and which top-level modules they provide. Then:

- every module a block imports must be provided by its install (or be the standard
  library), read from the block's source;
- the blocks run in order, in a fresh Python whose import statement refuses, to the
  blocks and to bpfast's own modules, any module that the block's install does not
  provide: what bpfast imports only when called (export_onnx's onnx, History.plot's
  matplotlib, bpfast.sklearn's scikit-learn) is checked there.

The environment running the tests has every extra installed (the test extra), so it can
run every block; the guard makes it behave as the smaller installs would.
"""
import ast
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import bpfast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
README = os.path.join(ROOT, "README.md")
PYPROJECT = os.path.join(ROOT, "pyproject.toml")

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
NEEDS = re.compile(r'[Nn]eeds `pip install "\.\[([\w,-]+)\]"`')
INSTALL = re.compile(r'\.venv/bin/pip install (?:-q )?"?\.(?:\[([\w,-]+)\])?"?(?= )')

# Run in a subprocess: installs an import guard, then executes the blocks in one namespace.
DRIVER = textwrap.dedent('''
    import builtins, json, sys
    spec = json.load(open(sys.argv[1], encoding="utf-8"))
    real_import = builtins.__import__
    current = {}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__") or ""
        if (level == 0 and current.get("allowed") is not None
                and (importer == "__readme__" or importer.split(".")[0] == "bpfast")):
            top = name.split(".")[0]
            if top not in current["allowed"]:
                raise ModuleNotFoundError(
                    f"README block {current['index']} (after {current['heading']!r}) runs on "
                    f"`{current['install']}`, which does not install {top!r}, imported by "
                    f"{importer!r}", name=top)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded_import
    namespace = {"__name__": "__readme__"}
    report = {}
    for index, block in enumerate(spec["blocks"], 1):
        current.update(block, index=index)
        exec(compile(block["code"], f"README.md block {index}", "exec"), namespace)
        if block["heading"] in spec["checks"]:      # what the block made, before later ones
            report[block["heading"]] = eval(spec["checks"][block["heading"]], namespace)
    current.clear()
    print(json.dumps(report))
''')


def _tour():
    """The set-up commands and the python blocks: (code, extras, heading) in order."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    setup_section = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = [body.strip() for lang, body in
                (m.groups() for m in FENCE.finditer(setup_section)) if lang == "bash"]
    blocks, previous_end = [], 0
    for match in FENCE.finditer(text):
        if match.group(1) == "python":
            between = text[previous_end:match.start()]
            extras = sorted({e for group in NEEDS.findall(between) for e in group.split(",")})
            headings = re.findall(r"^#+ (.*)$", text[:match.start()], flags=re.M)
            blocks.append((match.group(2), extras, headings[-1]))
        previous_end = match.end()
    return commands, blocks


def _pyproject():
    tomllib = pytest.importorskip("tomllib")        # Python >= 3.11
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["project"]


def _install_modules(requirements):
    """Top-level modules that installing these requirement strings brings, with what they need."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = [Requirement(r) for r in requirements]
    dists, seen_extras = set(), set()
    while wanted:
        req = wanted.pop()
        name = canonicalize_name(req.name)
        if (name, tuple(sorted(req.extras))) in seen_extras:
            continue
        seen_extras.add((name, tuple(sorted(req.extras))))
        dists.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue        # not installed here: a block that needs it is skipped below
        for spec in requires:
            sub = Requirement(spec)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra})
                                         for extra in ("", *req.extras)):
                wanted.append(sub)
    provided = {module for module, owners in metadata.packages_distributions().items()
                if any(canonicalize_name(owner) in dists for owner in owners)}
    return provided | set(sys.stdlib_module_names) | {"bpfast", "__future__"}


def _allowed_modules(project, extras):
    requirements = list(project["dependencies"])
    for extra in extras:
        assert extra in project["optional-dependencies"], \
            f"the README names the extra {extra!r}, which pyproject.toml does not define"
        requirements += project["optional-dependencies"][extra]
    return _install_modules(requirements)


def _skip_unless_installed(requirements):
    """The test environment (the test extra) has every peer; a narrower one skips the run."""
    from importlib import metadata

    from packaging.requirements import Requirement
    for requirement in requirements:
        try:
            metadata.distribution(Requirement(requirement).name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{requirement} is not installed")


def _imports(code):
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def _run_driver(tmp_path, blocks, checks):
    """Run the blocks in a guarded fresh Python; checks: {heading: expression after it}."""
    spec_path = tmp_path / "tour.json"
    spec_path.write_text(json.dumps({"blocks": blocks, "checks": checks}), encoding="utf-8")
    # The bpfast this test imported (a checkout's src/ with its extensions built in place,
    # or the installed package): src/ of a clean clone holds no compiled extensions.
    here = os.path.dirname(os.path.dirname(os.path.abspath(bpfast.__file__)))
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", DRIVER, str(spec_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------- the set-up commands
def test_two_setup_commands_and_ci_runs_the_second_verbatim():
    commands, _ = _tour()
    assert len(commands) == 2, commands
    install_and_demo, install_and_test = commands
    assert install_and_demo.endswith(".venv/bin/python -m bpfast demo")
    assert install_and_test.endswith(".venv/bin/python -m pytest -q")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert install_and_test in f.read().splitlines()
    assert INSTALL.search(install_and_demo) and INSTALL.search(install_and_test)


def test_every_block_imports_only_what_its_install_provides():
    project = _pyproject()
    commands, blocks = _tour()
    base = (INSTALL.search(commands[0]).group(1) or "").split(",")
    for code, extras, heading in blocks:
        allowed = _allowed_modules(project, [e for e in base + extras if e])
        for module in _imports(code):
            assert module.split(".")[0] in allowed, (
                f"the README block under {heading!r} imports {module}, which its install "
                f"(pip install .{extras or ''}) does not provide: add a 'Needs `pip install "
                f"\".[extra]\"`' line above it")


def test_the_static_check_sees_a_missing_extra():
    project = _pyproject()
    assert "sklearn" not in _allowed_modules(project, [])
    assert {"sklearn", "matplotlib", "threadpoolctl"} <= _allowed_modules(project, ["peers"])
    assert {"onnx", "onnxruntime"} <= _allowed_modules(project, ["onnx"])
    assert "onnx" not in _allowed_modules(project, ["peers"])


# ---------------------------------------------------------------- the tour itself
def test_readme_tour_runs_on_the_installs_it_names(tmp_path):
    project = _pyproject()
    commands, blocks = _tour()
    base = (INSTALL.search(commands[0]).group(1) or "").split(",")
    named = {e for _, extras, _ in blocks for e in extras}
    assert len(blocks) >= 9 and named == {"onnx", "peers"}
    _skip_unless_installed(r for extra in named for r in project["optional-dependencies"][extra])
    spec = [{"code": code, "heading": heading,
             "install": f'pip install "{".[" + ",".join(extras) + "]" if extras else "."}"',
             "allowed": sorted(_allowed_modules(project, [e for e in base + extras if e]))}
            for code, extras, heading in blocks]
    checks = {
        "Saving": "[same.sizes, net.sizes]",
        "Kernels": "[A.shape, E.shape]",
        "scikit-learn": "clf.score(X_test, y_test)",
        "Summary": "text",
        "Plotting a fit": "open('history.png', 'rb').read(8).hex()",
        "ONNX export": "[float(abs(Y_onnx - net.predict(X)).max()),"
                       " bool((labels == clf.predict(X_test)).all()),"
                       " float(abs(proba - clf.predict_proba(X_test)).max())]",
    }
    done = _run_driver(tmp_path, spec, checks)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == set(checks), "a checked README section was renamed: update the test"
    assert result["Saving"] == [[2, 4, 1], [2, 4, 1]]
    assert result["Kernels"] == [[4, 4], [4, 2]]
    assert result["scikit-learn"] > 0.9
    assert result["Plotting a fit"] == b"\x89PNG\r\n\x1a\n".hex()
    onnx_net, labels_equal, proba_diff = result["ONNX export"]
    assert onnx_net < 1e-12 and labels_equal and proba_diff < 1e-12
    # The summary printed in the README is the one the tour produces.
    with open(README, encoding="utf-8") as f:
        shown = f.read().split("```python\ntext = net.summary()", 1)[1]
    shown = shown.split("```text\n", 1)[1].split("```", 1)[0].rstrip("\n")
    assert result["Summary"] == shown


def test_the_guard_refuses_an_import_the_install_lacks(tmp_path):
    pytest.importorskip("onnx")
    project = _pyproject()
    block = {"code": "import bpfast\nbpfast.export_onnx(bpfast.Network([2, 1]), 'm.onnx')\n",
             "heading": "ONNX export", "install": 'pip install "."',
             "allowed": sorted(_allowed_modules(project, []))}
    done = _run_driver(tmp_path, [block], {})
    assert done.returncode != 0
    assert "does not install 'onnx', imported by 'bpfast._onnx'" in done.stderr
    assert 'pip install "bpfast[onnx]"' in done.stderr      # export_onnx's own message
    assert not (tmp_path / "m.onnx").exists()
