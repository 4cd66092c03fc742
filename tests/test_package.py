"""The package as users get it: a wheel with its data, public names, no private names crossing modules."""

import importlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


def test_public_names_at_the_top_and_in_each_subpackage():
    import archlab

    for name in ("from_diffusers", "build", "count", "preset", "presets", "load_description", "load_space", "LatencyTable",
                 "Predictor"):
        assert callable(getattr(archlab, name)), name
    for package in ("archlab", "archlab.arch", "archlab.cost", "archlab.quality", "archlab.search", "archlab.results"):
        module = importlib.import_module(package)
        assert module.__all__, package
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"


def test_no_private_name_is_imported_across_modules():
    private = re.compile(r"^\s*from\s+((?:archlab|optuna)[\w.]*)\s+import\s+\(?([^)\n]+)", re.M)
    offenders = []
    for path in (REPO / "archlab").rglob("*.py"):
        text = path.read_text()
        for module, names in private.findall(text):
            if any(part.startswith("_") for part in module.split(".")[1:]):
                offenders.append(f"{path.name}: {module}")
            offenders += [f"{path.name}: {module}.{n.strip()}" for n in names.split(",") if n.strip().startswith("_")]
    assert offenders == []


def test_the_top_level_folders_are_the_packaged_ones():
    from archlab import resources

    assert (REPO / "search_spaces").resolve() == resources.folder("spaces").resolve()
    assert (REPO / "latency_tables").resolve() == resources.folder("tables").resolve()


@pytest.mark.slow
def test_wheel_holds_presets_spaces_and_tables_and_works_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "archlab", src / "archlab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("archlab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("archlab/resources/search_spaces/mobilediffusion.yaml", "archlab/resources/search_spaces/presets/sd15.yaml",
                   "archlab/resources/latency_tables/x86-2core_torch-cpu.csv", "archlab/resources/latency_tables/x86-2core_litert.csv",
                   "archlab/resources/latency_tables/h100_torch-cuda.csv",
                   "archlab/resources/latency_tables/xeon-2core-snapgen_torch-cpu.csv",
                   "archlab/resources/latency_tables/xeon-2core-snapgen_litert.csv"):
        assert needed in names, needed
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = f"""
import sys; sys.path.insert(0, {str(site)!r})
import archlab
assert archlab.__file__.startswith({str(site)!r}), archlab.__file__
from archlab.cli import app
from archlab import LatencyTable, Predictor, load_space, preset
assert load_space("mobilediffusion").size() > 1_000_000
table = LatencyTable.load("x86-2core_torch-cpu")
assert str(table.path).startswith({str(site)!r})
print(Predictor([table]).score(preset("mobilediffusion")).latency_ms["x86-2core_torch-cpu"])
app(["describe", "sd15", "--json"], standalone_mode=False)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    latency, described = result.stdout.split("\n", 1)
    assert float(latency) > 0 and json.loads(described)["params"] == 859_520_964


def test_every_benchmark_results_file_has_its_manifest_entry():
    """benchmarks/results/<experiment>/: each file named in its folder's manifest.json with how it was made."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    files = [p for p in results.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert files
    for path in files:
        assert path.parent != results, f"{path.name} is not in an experiment folder"
        manifest = json.loads((path.parent / "manifest.json").read_text())
        entry = manifest["runs"].get(path.name)
        assert entry is not None, f"{path} has no entry in its manifest"
        assert {"command", "commit", "host", "date"} <= set(entry), path


def test_no_module_imports_a_layer_above_it_and_none_is_over_500_lines():
    """Layers import only downward (errors, config/files/progress/resources, arch, convert, cost, quality, distill,
    search, tables, results, cli); every module stays under about 500 lines."""
    import ast
    from pathlib import Path

    order = ["errors", "config", "files", "progress", "resources", "arch", "convert", "cost", "quality", "distill", "search",
             "tables", "results", "cli"]
    level = {name: i for i, name in enumerate(order)}
    level.update({"config": 1, "files": 1, "progress": 1, "resources": 1})
    root = Path(__file__).resolve().parent.parent / "archlab"
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] == "__init__" or parts[0] == "__main__":
            continue
        here = level[parts[0]]
        assert len(path.read_text().splitlines()) <= 520, f"{path} is over 500 lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("archlab."):
                target = node.module.split(".")[1]
                assert level[target] <= here, f"{path} imports {node.module}, a layer above it"
