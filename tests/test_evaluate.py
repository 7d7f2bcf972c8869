"""Evaluation (scripts/evaluation.py): Frechet distance against closed forms, novelty, context accuracy,
the classifier split and cache, a tiny end-to-end run, and the command line."""

import json

import evaluation as ev
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import du, run_scripts, write_sprites
from provenance import file_sha256, repo_path


def exact_gaussian_sample(n, mean, cov, seed=0):
    """n points whose sample mean and sample covariance (ddof = 1) are exactly ``mean`` and ``cov``."""
    rng = np.random.default_rng(seed)
    d = len(mean)
    z = rng.normal(size=(n, d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance now I
    return z @ np.linalg.cholesky(cov).T + mean


# -- Frechet distance ------------------------------------------------------------------------


def test_fd_of_identical_sets_is_zero_and_fd_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(200, 6)) * 2 + 1
    assert ev.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert ev.frechet_distance(a, b) == pytest.approx(ev.frechet_distance(b, a), rel=1e-9)
    assert ev.frechet_distance(a, b) > 0


def test_fd_of_shifted_unit_gaussians_is_squared_mean_distance():
    """FD(N(0, I), N(m, I)) = ||m||^2, up to sampling noise for large samples."""
    rng = np.random.default_rng(1)
    m = np.array([1.0, -2.0, 0.5, 0.0])
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + m
    assert ev.frechet_distance(a, b) == pytest.approx((m**2).sum(), rel=0.03)


def test_fd_matches_the_closed_form_for_diagonal_covariances():
    """||mu||^2 + sum (sqrt(a) - sqrt(b))^2, exact for samples with exactly these moments."""
    va, vb = np.array([1.0, 4.0, 9.0, 0.25]), np.array([2.0, 1.0, 9.0, 1.0])
    mu = np.array([0.5, 0.0, -1.0, 2.0])
    a = exact_gaussian_sample(50, np.zeros(4), np.diag(va), seed=2)
    b = exact_gaussian_sample(80, mu, np.diag(vb), seed=3)
    expected = (mu**2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert ev.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_fd_matches_the_closed_form_for_non_commuting_2x2_covariances():
    """For 2x2 matrices, Tr sqrt(Ca Cb) = sqrt(Tr(Ca Cb) + 2 sqrt(det Ca det Cb))."""
    ca = np.array([[2.0, 0.8], [0.8, 1.0]])
    cb = np.array([[1.0, -0.3], [-0.3, 3.0]])
    assert not np.allclose(ca @ cb, cb @ ca)
    mu = np.array([1.0, -1.0])
    tr_sqrt = np.sqrt(np.trace(ca @ cb) + 2 * np.sqrt(np.linalg.det(ca) * np.linalg.det(cb)))
    expected = (mu**2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt
    a = exact_gaussian_sample(40, np.zeros(2), ca, seed=4)
    b = exact_gaussian_sample(60, mu, cb, seed=5)
    assert ev.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_fd_is_finite_for_singular_covariances_and_checks_shapes():
    rng = np.random.default_rng(6)
    a = np.zeros((100, 5))
    a[:, 0] = rng.normal(size=100)  # rank 1
    b = rng.normal(size=(100, 5))
    assert np.isfinite(ev.frechet_distance(a, b))
    with pytest.raises(ValueError, match="feature sets"):
        ev.frechet_distance(a, b[:, :4])
    with pytest.raises(ValueError, match="at least 2"):
        ev.frechet_distance(a[:1], b)


# -- novelty ---------------------------------------------------------------------------------


def toy_sprites(n, seed=0):
    """White 16x16 sprites with a random 10x10 coloured patch in the middle, uint8 (n, 16, 16, 3)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 16, 16, 3), 255, dtype=np.uint8)
    x[:, 3:13, 3:13] = rng.integers(0, 256, (n, 10, 10, 3), dtype=np.uint8)
    return x


def shift(img, dy, dx):
    out = np.full_like(img, 255)
    h, w = img.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_novelty_flags_copies_and_shifted_copies_but_not_a_different_sprite():
    train = toy_sprites(20)
    train = np.concatenate([train, train[:5]])  # duplicates are counted once
    other = toy_sprites(1, seed=99)[0]
    noisy = np.clip(train[3].astype(float) + np.random.default_rng(0).normal(0, 5, train[3].shape), 0, 255)
    generated = np.stack(
        [train[0], shift(train[1], 0, 1), shift(train[2], -1, 1), train[4][:, ::-1], noisy.round(), other]
    ).astype(np.uint8)
    r = ev.novelty(generated, train)
    assert r["n_train_distinct"] == 20
    assert r["threshold"] == ev.NOVELTY_THRESHOLD
    assert r["distances"][:3] == pytest.approx(0, abs=1e-3)  # copy, shifted, shifted diagonally
    assert r["distances"][3] == pytest.approx(0, abs=1e-3)  # mirrored
    assert 0 < r["distances"][4] < ev.NOVELTY_THRESHOLD  # pixel noise of sd 5/255
    assert r["distances"][5] > 0.2
    assert list(r["distances"] < r["threshold"]) == [True] * 5 + [False]
    assert r["share"] == pytest.approx(5 / 6) and r["n_copies"] == 5 and r["n"] == 6
    assert list(r["nearest"][:2]) == [
        int(np.flatnonzero((ev.distinct_sprites(train) == train[i]).all((1, 2, 3)))[0]) for i in (0, 1)
    ]


def test_novelty_forgives_a_shift_that_pushes_content_off_the_edge():
    sprite = np.full((16, 16, 3), 255, dtype=np.uint8)
    sprite[2:16, 0:16] = np.random.default_rng(7).integers(0, 256, (14, 16, 3), dtype=np.uint8)
    r = ev.novelty(shift(sprite, 1, 1)[None], sprite[None])
    assert r["distances"][0] == pytest.approx(0, abs=1e-3)


def test_novelty_takes_model_tensors_in_minus_one_to_one():
    train = toy_sprites(4)
    as_tensor = du.images_to_tensor(train[:2])  # (2, 3, 16, 16) in [-1, 1]
    r = ev.novelty(as_tensor, train)
    assert r["share"] == 1.0
    far = ev.novelty(-torch.ones(1, 3, 16, 16), train)  # an all-black sprite
    assert far["share"] == 0.0


# -- context accuracy ------------------------------------------------------------------------


class CodeReader(nn.Module):
    """A stand-in classifier: the class is the number written in pixel (0, 0, 0) as k / 10."""

    def forward(self, x):
        k = torch.round(x[:, 0, 0, 0] * 10).long()
        return torch.nn.functional.one_hot(k, 5).float() * 5.0


def test_context_accuracy_counts_the_requested_class():
    requested = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 4])
    predicted = np.array([0, 0, 0, 3, 1, 2, 2, 2, 2, 0])
    images = torch.zeros(len(requested), 3, 16, 16)
    images[:, 0, 0, 0] = torch.from_numpy(predicted).float() / 10
    r = ev.context_accuracy(CodeReader(), images, np.eye(5)[requested])
    assert r["overall"] == pytest.approx(7 / 10)
    assert r["per_class"] == {
        "hero": pytest.approx(3 / 4),
        "non-hero": pytest.approx(1 / 2),
        "food": pytest.approx(1.0),
        "spell": None,
        "side-facing": pytest.approx(0.0),
    }
    assert r["n_per_class"]["hero"] == 4 and r["n_per_class"]["spell"] == 0
    assert r["confusion"][0] == [3, 0, 0, 1, 0] and r["confusion"][4] == [1, 0, 0, 0, 0]
    same = ev.context_accuracy(CodeReader(), images, requested)  # class numbers work too
    assert same["overall"] == r["overall"]


# -- classifier: split, training, cache ------------------------------------------------------


def test_split_is_deterministic_disjoint_and_complete():
    train, held = ev.split_indices(1000, 0.1, seed=3)
    train2, held2 = ev.split_indices(1000, 0.1, seed=3)
    assert np.array_equal(train, train2) and np.array_equal(held, held2)
    assert len(held) == 100 and len(train) == 900
    assert not set(train) & set(held)
    assert sorted(set(train) | set(held)) == list(range(1000))
    _, other = ev.split_indices(1000, 0.1, seed=4)
    assert not np.array_equal(held, other)
    with pytest.raises(ValueError):
        ev.split_indices(1000, 1.5)


def colour_sprites(n, seed=0):
    """Sprites whose class is their colour (5 colours), with noise; uint8 images and one-hot labels."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 5, n)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 0, 0]])
    x = palette[cls][:, None, None, :] + rng.normal(0, 40, (n, 16, 16, 3))
    return np.clip(x, 0, 255).astype(np.uint8), np.eye(5, dtype=np.float32)[cls]


def test_train_classifier_learns_an_easy_task_and_reports_the_split():
    images, labels = colour_sprites(300)
    model, info = ev.train_classifier(images, labels, epochs=4, width=8, batch_size=32, progress=False)
    assert info["held_out_accuracy"] >= 0.9
    assert info["split"] == {"held_out": 0.1, "seed": 0, "n_train": 270, "n_held_out": 30}
    assert model.features(du.images_to_tensor(images[:3])).shape == (3, model.feature_dim)
    assert model(du.images_to_tensor(images[:3])).shape == (3, 5)


def test_classifier_is_cached_and_retrained_when_the_data_changes(tmp_path):
    images, labels = colour_sprites(60)
    np.save(tmp_path / "sprites_16x16.npy", images)
    np.save(tmp_path / "sprite_labels_16x16.npy", labels)
    path = tmp_path / "clf.pth"
    kwargs = dict(epochs=1, width=4, progress=False)
    model, card = ev.load_or_train_classifier(path, tmp_path, **kwargs)
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["dataset"]["images_sha256"] == file_sha256(tmp_path / "sprites_16x16.npy")
    assert {"held_out_accuracy", "split", "epochs", "date"} <= set(saved)
    again, card2 = ev.load_or_train_classifier(path, tmp_path, **kwargs)
    assert card2["date"] == card["date"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    np.save(tmp_path / "sprites_16x16.npy", colour_sprites(60, seed=1)[0])
    _, card3 = ev.load_or_train_classifier(path, tmp_path, **kwargs)
    assert card3["dataset"]["images_sha256"] != card["dataset"]["images_sha256"]


# -- end to end ------------------------------------------------------------------------------


def test_evaluate_end_to_end_on_a_tiny_model(tmp_path, schedule, small_model):
    write_sprites(tmp_path, n=60)
    torch.manual_seed(0)
    classifier = ev.SpriteClassifier(width=4).eval()
    card = {"split": {"held_out": 0.1, "seed": 0}, "held_out_accuracy": 0.5}
    kwargs = dict(classifier=classifier, classifier_card=card, data_dir=tmp_path, batch_size=4, progress=False)
    r = ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=2, n_fd=3, **kwargs)
    assert r["n_conditional"] == 10 and r["steps"] == 2 and r["sampler"] == "ddim"
    assert set(r["context_accuracy"]["per_class"]) == set(du.CLASSES)
    assert r["fd"]["generated"] >= 0 and r["fd"]["real_floor"] >= 0
    assert r["novelty"]["n"] == 13 and 0 <= r["novelty"]["share"] <= 1
    json.dumps(r)  # JSON-ready
    table = ev.evaluation_markdown(r)
    assert "context accuracy, hero" in table and "floor, same drawings" in table
    assert r["fd"]["new_drawings_floor"] is None and "floor, new drawings" not in table  # no designs file here
    again = ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=2, n_fd=3, **kwargs)
    assert again["fd"]["generated"] == r["fd"]["generated"]  # seeded
    no_fd = ev.evaluate(small_model, schedule, "dpm", 2, n_per_class=1, n_fd=0, **kwargs)
    assert no_fd["fd"] is None and no_fd["novelty"]["n"] == 5
    free_only = ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=0, n_fd=3, **kwargs)  # no context
    assert free_only["context_accuracy"] is None and free_only["n_conditional"] == 0
    assert free_only["fd"]["generated"] == r["fd"]["generated"] and free_only["fd"]["conditional"] is None
    assert free_only["novelty"]["n"] == 3 and free_only["novelty"]["share_conditional"] is None
    table = ev.evaluation_markdown(free_only)
    assert "context accuracy | not measured" in table and "context accuracy, hero" not in table
    with pytest.raises(ValueError, match="nothing to measure"):
        ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=0, n_fd=0, **kwargs)
    with pytest.raises(ValueError, match="held-out"):
        ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=1, n_fd=4, **kwargs)
    with pytest.raises(ValueError, match="from 1 to T = 500"):  # DDPM takes 1..T steps (T: all of them)
        ev.evaluate(small_model, schedule, "ddpm", 501, **kwargs)
    with pytest.raises(ValueError, match="sampler"):
        ev.evaluate(small_model, schedule, "euler", 20, **kwargs)


# -- the yardstick: intervals and the new-drawings floor ------------------------------------


def test_accuracy_interval_matches_the_normal_approximation():
    correct = np.zeros(400, dtype=bool)
    correct[:280] = True  # 70% of 400
    lo, hi = ev.accuracy_interval(correct)
    half = 1.96 * np.sqrt(0.7 * 0.3 / 400)  # 0.045
    assert abs(lo - (0.7 - half)) < 0.01 and abs(hi - (0.7 + half)) < 0.01
    assert ev.accuracy_interval(np.ones(50, dtype=bool)) == [1.0, 1.0]


def test_fd_interval_has_the_spread_of_the_squared_mean_distance():
    # Unit Gaussians whose means differ by mu: FD ~ ||m_a - m_b||^2 with m_a - m_b ~ N(mu, 2 I / n),
    # whose standard deviation is sqrt(8 ||mu||^2 / n + 8 d / n^2) (the covariance part adds ~d^2 / n^2).
    n, d = 2000, 4
    rng = np.random.default_rng(0)
    mu = np.array([1.0, 0, 0, 0])
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + mu
    lo, hi = ev.fd_interval(a, b)
    fd = ev.frechet_distance(a, b)
    assert lo < fd < hi and abs((hi + lo) / 2 - fd) < 1e-9  # centred on the FD itself
    se = (hi - lo) / 2 / 1.96
    assert 0.75 < se / np.sqrt(8 / n + 8 * d / n**2) < 1.25
    assert lo < 1.0 < hi  # the true FD is 1


def design_data(n_per_class=80, designs_per_class=6, seed=0):
    """(designs, classes): class c's sprites use designs 10 c .. 10 c + designs_per_class - 1."""
    rng = np.random.default_rng(seed)
    classes = np.repeat(np.arange(5), n_per_class)
    designs = 10 * classes + rng.integers(0, designs_per_class, len(classes))
    return designs, classes


def test_design_halves_split_every_class_and_share_no_design():
    designs, classes = design_data()
    half = ev.design_halves(designs, classes, seed=3)
    for d in np.unique(designs):
        assert len(set(half[designs == d])) == 1  # all sprites of a design on one side
    for c in range(5):
        a = len(np.unique(designs[(classes == c) & half]))
        b = len(np.unique(designs[(classes == c) & ~half]))
        assert a + b == 6 and abs(a - b) <= 1


def test_new_drawings_sets_are_class_balanced_and_disjoint_in_designs():
    designs, classes = design_data()
    held = np.arange(0, len(designs), 2)
    set_a, set_b = ev.new_drawings_sets(held, designs, classes, n=20, seed=1)
    for s in (set_a, set_b):
        assert len(s) == 20 and len(set(s)) == 20 and set(s) <= set(held)
        assert np.bincount(classes[s], minlength=5).tolist() == [4] * 5
    assert not set(designs[set_a]) & set(designs[set_b])
    with pytest.raises(ValueError, match=r"half A of the designs.*--n-fd"):
        ev.new_drawings_sets(held, designs, classes, n=500, seed=1)


def test_evaluate_reports_both_floors_when_the_set_records_designs(tmp_path, schedule, small_model):
    write_sprites(tmp_path, n=400)
    labels = np.load(tmp_path / "sprite_labels_16x16.npy").argmax(1)
    designs = 10 * labels + np.random.default_rng(0).integers(0, 4, len(labels))
    np.save(tmp_path / ev.DESIGNS_FILE, designs.astype(np.int32))
    torch.manual_seed(0)
    classifier = ev.SpriteClassifier(width=4).eval()
    card = {"split": {"held_out": 0.1, "seed": 0}, "held_out_accuracy": 0.5}
    kwargs = dict(classifier=classifier, classifier_card=card, data_dir=tmp_path, batch_size=8, progress=False)
    r = ev.evaluate(small_model, schedule, "ddim", 2, n_per_class=2, n_fd=5, **kwargs)
    fd, acc = r["fd"], r["context_accuracy"]
    assert fd["new_drawings_floor"] >= 0 and fd["ratio_new_drawings"] == fd["generated"] / fd["new_drawings_floor"]
    for key in ("generated", "real_floor", "new_drawings_floor"):
        lo, hi = fd[key + "_ci95"]
        assert lo <= fd[key] <= hi
    assert acc["overall_ci95"][0] <= acc["overall"] <= acc["overall_ci95"][1]
    assert set(acc["per_class_ci95"]) == set(du.CLASSES)
    assert sum(sum(halves) for halves in fd["new_drawings_designs"].values()) == len(np.unique(designs))
    table = ev.evaluation_markdown(r)
    assert "floor, same drawings" in table and "floor, new drawings" in table and "(95%: " in table
    json.dumps(r)


# -- command line ----------------------------------------------------------------------------


def test_cli_missing_weights_and_bad_arguments_are_one_line_and_non_zero(tmp_path):
    missing, sampler, n_fd = run_scripts(
        [
            ("evaluate.py", ["--weights", tmp_path / "missing.pth", "--no-progress"]),
            ("evaluate.py", ["--sampler", "euler"]),
            ("evaluate.py", ["--n-fd", "-3"]),
        ],
        tmp_path,
    )
    assert missing.returncode != 0
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error:") and "missing.pth" in lines[0]
    assert "Traceback" not in missing.stderr
    assert sampler.returncode == 2 and "invalid choice" in sampler.stderr
    assert n_fd.returncode == 2 and ">= 1" in n_fd.stderr


def test_reports_name_files_inside_the_repository_by_relative_paths(tmp_path):
    assert repo_path(du.WEIGHTS_DIR / "sprite_classifier.pth") == "weights/sprite_classifier.pth"
    assert repo_path(tmp_path / "m.pth") == str(tmp_path / "m.pth")  # outside: as given


# -- the shipped judge: used only with its own data, never overwritten ----------------------------


def test_the_shipped_judge_is_never_overwritten_and_other_data_gets_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CLASSIFIER_CACHE", tmp_path / "judges")
    shipped = {p: p.read_bytes() for p in (ev.CLASSIFIER_PATH, ev.CLASSIFIER_PATH.with_suffix(".json"))}
    data = tmp_path / "other"
    data.mkdir()
    images, labels = colour_sprites(60)
    np.save(data / "sprites_16x16.npy", images)
    np.save(data / "sprite_labels_16x16.npy", labels)
    for path in (None, ev.CLASSIFIER_PATH):  # the default, and the shipped file named outright
        _, card = ev.load_or_train_classifier(path, data, epochs=1, width=4, progress=False)
        assert card["path"].startswith(str(tmp_path / "judges"))
        assert "not used" in card["note_for_user"] and "another sprite set" in card["note_for_user"]
    assert all(p.read_bytes() == content for p, content in shipped.items())
    cached = json.loads((tmp_path / "judges").glob("*/sprite_classifier.json").__next__().read_text())
    assert cached["dataset"]["images_sha256"] == file_sha256(data / "sprites_16x16.npy")


def test_the_shipped_judge_is_used_with_the_data_it_was_trained_on(monkeypatch, tmp_path):
    card = json.loads(ev.CLASSIFIER_PATH.with_suffix(".json").read_text())
    images, _ = du.sprite_files()
    if file_sha256(images) != card["dataset"]["images_sha256"]:
        pytest.skip("data/ is not the sprite set the shipped judge was trained on")
    monkeypatch.setattr(ev, "CLASSIFIER_CACHE", tmp_path / "judges")
    _, used = ev.load_or_train_classifier(progress=False)
    assert used["path"] == str(ev.CLASSIFIER_PATH) and not used.get("note_for_user")
    assert not (tmp_path / "judges").exists()


def test_draw_sprites_calls_samplers_in_the_shared_shape(monkeypatch, schedule):
    """sample_X(model, schedule, n_sample, steps, context=..., *, guide_w, generator, save_rate, callback,
    progress)[0]; DDPM with steps None takes the sampler's default (all T steps)."""
    calls = []

    def fake_sampler(model, schedule, n_sample, steps=None, context=None, *, guide_w=0.0, generator=None,
                     x_T=None, save_rate=20, callback=None, progress=True):  # fmt: skip
        calls.append({"steps": steps, "n": n_sample, "context": context, "save_rate": save_rate})
        callback(0, None)
        return torch.zeros(n_sample, 3, 16, 16), None, [0]

    monkeypatch.setitem(ev.SAMPLERS, "ddpm", fake_sampler)
    monkeypatch.setitem(ev.SAMPLERS, "ddim", fake_sampler)
    out = ev.draw_sprites(None, schedule, 5, "ddpm", None, batch_size=3, progress=False)
    assert out.shape == (5, 3, 16, 16) and [c["steps"] for c in calls] == [None, None]
    assert [c["n"] for c in calls] == [3, 2] and all(c["save_rate"] is None for c in calls)
    calls.clear()
    ev.draw_sprites(None, schedule, 2, "ddpm", 100, context=torch.eye(5)[:2], progress=False)
    assert calls[0]["steps"] == 100 and calls[0]["context"].shape == (2, 5)  # DDPM on 100 of the steps
    calls.clear()
    ev.draw_sprites(None, schedule, 2, "ddim", 25, progress=False)
    assert calls[0]["steps"] == 25
