"""The shipped weights: listed in weights/MANIFEST.json with the right hashes, loadable by
load_model, within the size budget, and produced by the course's own training command."""

import json

import pytest
from conftest import ROOT, du
from provenance import file_sha256

WEIGHTS = ROOT / "weights"
MANIFEST = WEIGHTS / "MANIFEST.json"
NEEDED = ["model_trained.pth", "context_model_trained.pth"]


@pytest.fixture(scope="module")
def manifest():
    assert MANIFEST.exists(), "weights/MANIFEST.json is missing (scripts/ship_weights.py writes it)"
    return json.loads(MANIFEST.read_text())


def test_every_lesson_checkpoint_is_listed(manifest):
    files = manifest["files"]
    for name in NEEDED:
        assert name in files
    assert len([n for n in files if n.startswith("model_") and n[6:-4].isdigit()]) >= 3  # snapshots for lesson 2


def test_manifest_hashes_match_the_files(manifest):
    for name, info in manifest["files"].items():
        assert file_sha256(WEIGHTS / name) == info["sha256"], name


def test_every_pth_in_weights_is_accounted_for(manifest):
    listed = set(manifest["files"]) | {"sprite_classifier.pth"}
    assert {p.name for p in WEIGHTS.glob("*.pth")} <= listed


def test_weights_fit_the_size_budget(manifest):
    sizes = [(WEIGHTS / name).stat().st_size for name in manifest["files"]]
    assert max(sizes) <= 15e6 and sum(sizes) <= 40e6


def test_shipped_weights_load_into_the_course_model(manifest):
    for name in manifest["files"]:
        model = du.load_model(WEIGHTS / name)
        assert model.config() == {"in_channels": 3, "n_feat": 64, "n_cfeat": 5, "height": 16}


def test_weights_were_made_by_the_training_script(manifest):
    assert manifest["command"].startswith("python scripts/train.py")
    assert manifest["images_seen"] == manifest["steps"] * manifest["config"]["batch_size"]
