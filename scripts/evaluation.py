"""Judge a model's sprites: a sprite classifier, context accuracy, sprite FD and novelty.

Tooling for scripts/evaluate.py and scripts/benchmark.py's quality sweep; no lesson uses it.
Its one job: turn a trained model into three figures a learner can read, and a report.

- ``SpriteClassifier`` and ``load_or_train_classifier``: the judge. The repository ships one
  (weights/sprite_classifier.pth and its card .json) trained on the default sprite set; it is
  used only when the card's data hashes match the sprite set being judged. For any other set a
  judge is trained and cached under runs/judges/<hash>/, never over the shipped file.
- ``context_accuracy``: the share of sprites drawn with a one-hot context that the judge
  assigns to the class asked for.
- ``frechet_distance``: FD between Gaussians fitted to the judge's penultimate features.
- ``novelty``: the share of sprites that are near-copies of a training sprite.
- ``evaluate`` runs all three; ``evaluation_markdown`` renders the result as a table.
- ``SAMPLERS`` (the module's samplers by their ``--sampler`` names) and ``tensor_to_images``: shared
  with scripts/sample.py.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import pickle
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from provenance import file_sha256, repo_path
from tqdm.auto import tqdm

import diffusion_utilities as du

#: The judge that ships with the repository (state dict + JSON card); never written by this module.
CLASSIFIER_PATH = du.WEIGHTS_DIR / "sprite_classifier.pth"

#: Where judges trained on other sprite sets are cached: runs/judges/<images sha256[:12]>/.
CLASSIFIER_CACHE = du.REPO_ROOT / "runs" / "judges"

#: A generated sprite counts as a near-copy of a training sprite below this RMS pixel distance
#: (pixels in [0, 1], after the best 1-pixel shift and mirror). How it was chosen: see ``novelty``.
NOVELTY_THRESHOLD = 0.05

#: The course's samplers by the names the scripts use (``--sampler``).
SAMPLERS = {
    "ddpm": du.sample_ddpm,
    "ddim": du.sample_ddim,
    "dpm": du.sample_dpm_solver,
    "dpm-sde": du.sample_dpm_solver_sde,
}


def tensor_to_images(x) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] (tensor or array) -> (N, H, W, 3) uint8, values clipped to the range."""
    x = x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float32)
    x = np.clip((x + 1) * 127.5, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


class SpriteClassifier(nn.Module):
    """A small CNN that tells the five sprite classes apart; the judge of the evaluation.

    Input (B, 3, H, W) in [-1, 1] (H = W = 16, any multiple of 4 works); output logits
    (B, n_classes). Three stages of (Conv3x3, BatchNorm, ReLU) with widths w, 2w, 4w, a 2x2
    max-pool after the first two, then a global average pool: ``features(x)`` is that pooled
    (B, 4w) vector (128 numbers with the default w = 32), the penultimate layer the sprite FD
    is measured in, and a Linear layer maps it to the logits.
    """

    def __init__(self, n_classes: int = len(du.CLASSES), in_channels: int = 3, width: int = 32):
        super().__init__()
        self.n_classes, self.in_channels, self.width = n_classes, in_channels, width

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, n_classes)

    @property
    def feature_dim(self) -> int:
        return 4 * self.width

    def config(self) -> dict:
        return {"n_classes": self.n_classes, "in_channels": self.in_channels, "width": self.width}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features, (B, 3, H, W) -> (B, 4 * width)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def split_indices(n: int, held_out: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic random split of ``range(n)``: (train, held_out) index arrays, each sorted.

    ``round(held_out * n)`` indices (at least 1, at most n - 1) go to the held-out part, chosen
    by ``numpy.random.default_rng(seed).permutation(n)``; the two parts are disjoint and cover
    ``range(n)``. The same (n, held_out, seed) always gives the same split.

    The split is by sprite, not by drawing. The course's set is ~1,500 base drawings, each
    shifted by up to 1 pixel and mirrored into many sprites (only 19,030 of its 60,000 sprites
    are distinct), so held-out sprites are mostly shifts, mirrors or exact copies of training
    ones: held-out accuracy measures recognising known drawings in new positions. This is
    deliberate: the held-out part is then a fair sample of the very distribution the diffusion
    model learns, which is what the real sets of the sprite FD need. (A split by drawing
    would hold out a tenth of the drawings, and even a perfect generator would look far from
    them; tried once, the classifier then named the class of unseen drawings right for about
    80% of sprites, and for only half of the non-hero animals, of which there are 53.)
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"Need at least 2 items to split, got {n}.")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be a share between 0 and 1, got {held_out!r}.")
    n_held = min(max(round(held_out * n), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def _class_indices(labels) -> np.ndarray:
    """(N, n_classes) one-hot / scores or (N,) class numbers -> (N,) int64 class numbers."""
    labels = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if labels.ndim == 2:
        return labels.argmax(1).astype(np.int64)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    raise ValueError(f"Expected labels of shape (N, n_classes) or (N,), got {labels.shape}.")


def _as_model_input(images) -> torch.Tensor:
    """(N, H, W, 3) uint8 (as stored) or (N, 3, H, W) float in [-1, 1] -> (N, 3, H, W) float32 in [-1, 1]."""
    if torch.is_tensor(images):
        return images.detach().float()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return du.images_to_tensor(images)
    return torch.from_numpy(images.astype(np.float32))


@torch.no_grad()
def predict_logits(classifier, images, batch_size: int = 1000, features: bool = False) -> np.ndarray:
    """Run ``classifier`` over images in batches: logits (N, n_classes), or with ``features=True``
    the penultimate features (N, D), as a float64 numpy array. Images as ``_as_model_input``."""
    x = _as_model_input(images)
    first = next(classifier.parameters(), None) if isinstance(classifier, nn.Module) else None
    device = first.device if first is not None else torch.device("cpu")
    fn = classifier.features if features else classifier
    was_training = getattr(classifier, "training", False)
    if isinstance(classifier, nn.Module):
        classifier.eval()
    try:
        out = [fn(x[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
    finally:
        if isinstance(classifier, nn.Module):
            classifier.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def train_classifier(
    images,
    labels,
    *,
    held_out: float = 0.1,
    seed: int = 0,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    device=None,
    progress: bool = True,
) -> tuple[SpriteClassifier, dict]:
    """Train a ``SpriteClassifier`` on the training part of ``split_indices(N, held_out, seed)``.

    images: (N, H, W, 3) uint8 or (N, 3, H, W) in [-1, 1]; labels: (N, n_classes) one-hot or
    (N,) class numbers. Adam with the learning rate decayed linearly to 0, cross-entropy,
    ``epochs`` passes in shuffled batches, and a random left-right mirror per sprite (the set
    is mirrored already; this only adds variety). Under a minute on two CPU cores.

    Returns ``(classifier, info)``: the classifier in eval mode on the CPU, and info with the
    held-out accuracy (overall and per class), the accuracy on held-out sprites that are not
    pixel-identical to any training sprite, the split (seed, sizes), epochs and seconds.
    """
    start = time.time()
    x = _as_model_input(images)
    y = torch.from_numpy(_class_indices(labels))
    n_classes = int(labels.shape[1]) if getattr(labels, "ndim", 1) == 2 else int(y.max()) + 1
    train_idx, held_idx = split_indices(len(x), held_out, seed)
    device = du.get_device(device)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the global random state untouched
        torch.manual_seed(seed)
        model = SpriteClassifier(n_classes, x.shape[1], width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / total)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = x[train_idx], y[train_idx]
    bar = tqdm(total=total, desc="classifier", disable=not progress, leave=False)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for k in range(steps_per_epoch):
            idx = order[k * batch_size : (k + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model = model.cpu().eval()
    pred = predict_logits(model, x[held_idx]).argmax(1)
    truth = y[held_idx].numpy()
    correct = pred == truth
    # Held-out sprites with no pixel-identical twin in the training part.
    flat = tensor_to_images(x).reshape(len(x), -1)
    seen = {row.tobytes() for row in flat[train_idx]}
    unseen = np.array([row.tobytes() not in seen for row in flat[held_idx]])
    names = list(du.CLASSES) if n_classes == len(du.CLASSES) else [str(c) for c in range(n_classes)]
    info = {
        "held_out_accuracy": float(correct.mean()),
        "held_out_accuracy_per_class": {
            names[c]: float(correct[truth == c].mean()) if (truth == c).any() else None for c in range(n_classes)
        },
        "held_out_unseen": int(unseen.sum()),
        "held_out_accuracy_unseen": float(correct[unseen].mean()) if unseen.any() else None,
        "split": {"held_out": held_out, "seed": seed, "n_train": len(train_idx), "n_held_out": len(held_idx)},
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "arch": model.config(),
        "seconds": round(time.time() - start, 1),
    }
    return model, info


def _read_card(card_path: Path) -> dict | None:
    """A judge's JSON card, or None when it is missing or unreadable."""
    try:
        return json.loads(card_path.read_text())
    except (OSError, ValueError):
        return None


def _card_matches(card: dict | None, wanted: dict) -> bool:
    """Was the judge of ``card`` trained on this data (hashes) with these settings?"""
    try:
        have = {**card["split"], "epochs": card["epochs"], **card["arch"], **card["dataset"]}
    except (KeyError, TypeError):
        return False
    return all(have.get(k) == v for k, v in wanted.items())


def _load_classifier(path: Path, card: dict) -> SpriteClassifier:
    """The judge's state dict from ``path``, loaded safely (``weights_only=True``: no code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = SpriteClassifier(**card["arch"])
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is not a readable sprite classifier ({first}); delete it to train a new one."
        ) from None
    return model.eval()


def _save_classifier(model: SpriteClassifier, card: dict, path: Path) -> None:
    """Write the state dict (atomically: temporary file, then rename) and its card beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_or_train_classifier(
    path=None,
    data_dir=None,
    *,
    held_out: float = 0.1,
    seed: int = 0,
    epochs: int = 2,
    width: int = 32,
    retrain: bool = False,
    device=None,
    progress: bool = True,
) -> tuple[SpriteClassifier, dict]:
    """The judge for the sprite set in ``data_dir``: loaded when a matching one exists, else trained.

    A judge matches when its card (``<path>.json``: held-out accuracy, split, epochs, width, the
    sha256 of the images and labels files it was trained on, date) records this sprite set's
    hashes and these settings. The state dict is loaded safely (``weights_only=True``).

    ``path=None`` (the default): the shipped judge ``CLASSIFIER_PATH`` if it matches; otherwise
    the cache ``CLASSIFIER_CACHE / <images sha256[:12]> / sprite_classifier.pth``, trained there
    with ``train_classifier`` when missing or stale. The shipped file is never written: asked to
    train at ``CLASSIFIER_PATH`` (a stale shipped judge, or ``retrain=True``), it trains into the
    cache instead. Any other ``path`` is the user's own cache: loaded if it matches, else
    (re)trained and written there.

    Returns ``(classifier on the CPU in eval mode, card)``; the returned card also holds
    ``path`` (where the judge was loaded from or written to) and ``note_for_user`` (None, or one
    line saying why the shipped judge was not used).
    """
    sfile, lfile = du.sprite_files(data_dir)
    hashes = {"images_sha256": file_sha256(sfile), "labels_sha256": file_sha256(lfile)}
    wanted = {"held_out": held_out, "seed": seed, "epochs": epochs, "width": width, **hashes}
    cache = CLASSIFIER_CACHE / hashes["images_sha256"][:12] / CLASSIFIER_PATH.name
    shipped = CLASSIFIER_PATH.resolve()
    note = None
    if path is None or Path(path).resolve() == shipped:
        shipped_card = _read_card(CLASSIFIER_PATH.with_suffix(".json"))
        if not retrain and CLASSIFIER_PATH.exists() and _card_matches(shipped_card, wanted):
            return _load_classifier(CLASSIFIER_PATH, shipped_card), {**shipped_card, "path": str(CLASSIFIER_PATH)}
        if retrain:
            why = "retraining was asked for"
        elif shipped_card is None or not CLASSIFIER_PATH.exists():
            why = "it is missing (restore it with `git checkout -- weights/`)"
        elif shipped_card.get("dataset", {}).get("images_sha256") != hashes["images_sha256"]:
            why = f"it was trained on another sprite set than {sfile} (sha256 differs)"
        else:
            why = "it was trained with other settings"
        note = f"The shipped judge {repo_path(CLASSIFIER_PATH)} was not used: {why}; using {repo_path(cache)}."
        path = cache
    path = Path(path)
    card = _read_card(path.with_suffix(".json"))
    if not retrain and path.exists() and _card_matches(card, wanted):
        return _load_classifier(path, card), {**card, "path": str(path), "note_for_user": note}
    images, labels = du.load_sprites(sfile, lfile)
    model, info = train_classifier(
        images, labels, held_out=held_out, seed=seed, epochs=epochs, width=width, device=device, progress=progress
    )
    card = {
        **info,
        "dataset": {"images": sfile.name, "labels": lfile.name, "n": len(images), **hashes},
        "note": (
            "Random split by sprite (split_indices): held-out sprites share base drawings with training ones "
            "(1-pixel shifts, mirrors, exact copies), so held_out_accuracy is for known drawings in new "
            "positions; held_out_accuracy_unseen counts only held-out sprites with no pixel-identical twin "
            "in the training part. The held-out part is a fair sample of the sprite set, used as the real "
            "sets of the sprite FD."
        ),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _save_classifier(model, card, path)
    if note:
        note = note.replace("; using", "; trained a new one in")
    return model, {**card, "path": str(path), "note_for_user": note}


def frechet_distance(feats_a, feats_b) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    With means mu and covariances C (ddof = 1) of each set, in float64:

        FD = ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))

    (the squared 2-Wasserstein distance between N(mu_a, C_a) and N(mu_b, C_b); FID is this in
    Inception features). Tr (C_a C_b)^(1/2) is the sum of the square roots of the eigenvalues
    of the symmetric matrix S C_b S with S = C_a^(1/2), which has the same eigenvalues as
    C_a C_b: two symmetric eigen-decompositions, no scipy, no complex numbers. Eigenvalues a
    hair below zero from rounding are set to 0. Identical sets give 0; FD(a, b) = FD(b, a).
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Expected two feature sets (N_a, D) and (N_b, D), got {a.shape} and {b.shape}.")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Each set needs at least 2 rows for a covariance, got {len(a)} and {len(b)}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    return float(max(fd, 0.0))


def context_accuracy(classifier, images, requested, class_names: Sequence[str] = du.CLASSES) -> dict:
    """How often the classifier sees the class that was asked for.

    images: (N, 3, H, W) in [-1, 1] or (N, H, W, 3) uint8; requested: (N, n_classes) one-hot
    contexts or (N,) class numbers; ``classifier(x)`` returns logits (B, n_classes). The
    classifier's class is the argmax of the logits. Returns a dict with ``overall`` (share of
    all N sprites classified as requested), ``per_class`` {name: share among the sprites
    requested as that class, None if none were}, ``n_per_class`` and ``confusion``
    (rows: requested class, columns: classifier's class; counts).
    """
    want = _class_indices(requested)
    got = predict_logits(classifier, images).argmax(1)
    if len(want) != len(got):
        raise ValueError(f"{len(got)} images but {len(want)} requested classes.")
    k = len(class_names)
    if want.size and max(want.max(), got.max()) >= k:
        raise ValueError(f"Class numbers must be below {k} (the number of class names).")
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (want, got), 1)
    per_class = {
        name: float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None
        for c, name in enumerate(class_names)
    }
    correct = want == got
    return {
        "overall": float(correct.mean()) if len(want) else None,
        "overall_ci95": accuracy_interval(correct) if len(want) else None,
        "per_class": per_class,
        "per_class_ci95": {
            name: accuracy_interval(correct[want == c]) if (want == c).any() else None
            for c, name in enumerate(class_names)
        },
        "n_per_class": {name: int(confusion[c].sum()) for c, name in enumerate(class_names)},
        "confusion": confusion.tolist(),
    }


# --------------------------------------------------------------------------------------------
# The yardstick: 95% intervals, and a floor over disjoint designs
#
# The 60,000 sprites are shifts and mirrors of about 1,550 base renders, so two random real sets
# share their drawings and their FD (the "same drawings" floor) is what a model that copies the
# set would get. A model that draws new sprites is compared with the "new drawings" floor: real
# sprites of one half of the designs (a drawing and its skin-tone variants) against real sprites
# of the other half.
# --------------------------------------------------------------------------------------------

#: The builder's file of design ids, one per sprite (scripts/build_sprites.py).
DESIGNS_FILE = "sprite_designs_16x16.npy"

#: Bootstrap draws behind each interval.
N_BOOTSTRAP = 1000


def accuracy_interval(correct, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> list[float]:
    """A bootstrap percentile interval for the share of True in ``correct`` (N,) bool: [low, high].

    The N sprites are drawn again with replacement ``n_boot`` times; the interval holds the
    middle ``level`` of the shares. (For a share p of N it is close to p +- 1.96 sqrt(p (1 - p) / N).)
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    shares = correct[rng.integers(0, correct.size, size=(n_boot, correct.size))].mean(1)
    tail = (1 - level) / 2
    return [float(np.quantile(shares, tail)), float(np.quantile(shares, 1 - tail))]


def fd_interval(feats_a, feats_b, level: float = 0.95, n_boot: int = 200, seed: int = 0) -> list[float]:
    """A normal bootstrap interval for ``frechet_distance(feats_a, feats_b)``: FD -+ z * SE, [low, high].

    SE is the standard deviation of the FD over ``n_boot`` draws of both sets with replacement;
    z = 1.96 for 95%. (Not the bootstrap percentiles: a set drawn with replacement repeats rows,
    which shrinks its covariance and shifts every FD up, so the percentiles would miss the FD
    itself; the spread is what the draws measure well.)
    """
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = [
        frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(n_boot)
    ]
    z = float(torch.distributions.Normal(0, 1).icdf(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    fd, se = frechet_distance(a, b), float(np.std(draws, ddof=1))
    return [max(fd - z * se, 0.0), fd + z * se]


def load_designs(data_dir=None) -> np.ndarray | None:
    """The design id of every sprite, (N,) int64, from ``sprite_designs_16x16.npy`` beside the set.

    None when the set has no such file: the original course's sprites, or a set built before the
    builder recorded designs (``make data`` rebuilds it).
    """
    sfile, _ = du.sprite_files(data_dir)
    path = sfile.parent / DESIGNS_FILE
    if sfile.name != du.OUR_SPRITES[0] or not path.exists():
        return None
    return np.load(path, allow_pickle=False).astype(np.int64)


def design_halves(designs, classes, seed: int = 0) -> np.ndarray:
    """Split the designs of every class in two halves: (N,) bool, True where a sprite's design is in half A.

    designs, classes: (N,) ints, one per sprite. Per class, its designs in a random order
    (``numpy.random.default_rng(seed)``) go to A and B in turn, so the halves differ by at most
    one design per class, and no design is in both.
    """
    designs, classes = np.asarray(designs), np.asarray(classes)
    in_a = np.zeros(designs.max() + 1, dtype=bool)
    rng = np.random.default_rng(seed)
    for c in np.unique(classes):
        order = rng.permutation(np.unique(designs[classes == c]))
        in_a[order[0::2]] = True
    return in_a[designs]


def class_balanced(pool, classes, n: int, rng: np.random.Generator, what: str = "pool") -> np.ndarray:
    """``n`` distinct indices from ``pool``, n // k of each of the k classes (the first n % k classes one more).

    classes: (N,) class numbers of all sprites; a class with too few sprites in the pool is a ValueError.
    """
    pool, classes = np.asarray(pool), np.asarray(classes)
    kinds = np.unique(classes)
    picks = []
    for i, c in enumerate(kinds):
        want = n // len(kinds) + (i < n % len(kinds))
        members = pool[classes[pool] == c]
        if len(members) < want:
            raise ValueError(
                f"{what} has {len(members)} sprites of class {c}, {want} are needed; ask for fewer sprites (--n-fd)."
            )
        picks.append(rng.choice(members, size=want, replace=False))
    return np.sort(np.concatenate(picks))


def new_drawings_sets(held_idx, designs, classes, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two class-balanced sets of ``n`` held-out sprites each, from disjoint halves of the designs."""
    half_a = design_halves(designs, classes, seed)
    held_idx = np.asarray(held_idx)
    rng = np.random.default_rng(seed)
    a = class_balanced(held_idx[half_a[held_idx]], classes, n, rng, "half A of the designs (held-out sprites)")
    b = class_balanced(held_idx[~half_a[held_idx]], classes, n, rng, "half B of the designs (held-out sprites)")
    return a, b


def spread_interval(values, level: float = 0.95) -> list[float]:
    """Where one measurement falls: mean -+ z * sd of ``values`` (one per seed), [low, high], low >= 0."""
    values = np.asarray(values, dtype=np.float64)
    z = float(torch.distributions.Normal(0, 1).icdf(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    mean, sd = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return [max(mean - z * sd, 0.0), mean + z * sd]


def fd_floors(
    classifier, images, labels, designs, held_idx, n: int, seed: int = 0, n_seeds: int = 20
) -> tuple[dict, np.ndarray]:
    """The two floors of the sprite FD for sets of ``n`` held-out real sprites, each over ``n_seeds`` seeds.

    - ``real_floor`` ("same drawings"): two disjoint random sets of held-out sprites. They share
      their drawings (the set is shifts and mirrors of ~1,550 renders), so this is what a model
      that reproduces the set's own drawings would get.
    - ``new_drawings_floor``: two class-balanced sets from disjoint halves of the designs
      (``new_drawings_sets``): what a model that draws new sprites of the same kind can hope for.
      None when the set records no designs (``load_designs``).

    Each floor is the mean over seeds ``seed .. seed + n_seeds - 1`` (new sets, and for the new
    drawings a new split of the designs, at every seed), with ``spread_interval``: the range a
    single floor measurement falls in 95% of the time. (A bootstrap of one pair of sets misses the
    split's share of that spread.) The generated sprites are compared with the first set of seed
    ``seed``'s same-drawings pair, returned as its features (n, D) beside the dict.
    """
    if 2 * n > len(held_idx):
        raise ValueError(
            f"n_fd = {n} needs 2 x {n} held-out real sprites for the FD and its floor; "
            f"the held-out split has {len(held_idx)}."
        )
    held_idx = np.asarray(held_idx)
    feats = predict_logits(classifier, images[held_idx], features=True)  # (len(held_idx), D), once
    row = np.full(len(images), -1)
    row[held_idx] = np.arange(len(held_idx))
    same = []
    for s in range(seed, seed + n_seeds):
        order = np.random.default_rng(s).permutation(len(held_idx))
        same.append(frechet_distance(feats[order[:n]], feats[order[n : 2 * n]]))
        if s == seed:
            f_a = feats[order[:n]]
    floors = {
        "real_floor": float(np.mean(same)),
        "real_floor_ci95": spread_interval(same),
        "new_drawings_floor": None,
        "new_drawings_floor_ci95": None,
        "new_drawings_designs": None,
        "floor_seeds": n_seeds,
    }
    if designs is not None:
        classes = _class_indices(labels)
        new = []
        for s in range(seed, seed + n_seeds):
            set_a, set_b = new_drawings_sets(held_idx, designs, classes, n, s)
            new.append(frechet_distance(feats[row[set_a]], feats[row[set_b]]))
        halves = design_halves(designs, classes, seed)
        names = list(du.CLASSES) if classes.max() < len(du.CLASSES) else [str(c) for c in np.unique(classes)]
        floors["new_drawings_floor"] = float(np.mean(new))
        floors["new_drawings_floor_ci95"] = spread_interval(new)
        floors["new_drawings_designs"] = {
            names[c]: [len(np.unique(designs[(classes == c) & half])) for half in (halves, ~halves)]
            for c in np.unique(classes)
        }
    return floors, f_a


def _as_uint8_hwc(images) -> np.ndarray:
    """(N, H, W, 3) uint8 as stored, or (N, 3, H, W) in [-1, 1] (tensor or array) -> (N, H, W, 3) uint8."""
    if not torch.is_tensor(images) and np.asarray(images).dtype == np.uint8:
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"Expected uint8 sprites of shape (N, H, W, C), got {images.shape}.")
        return images
    return tensor_to_images(images)


def _shifted_copies(x: torch.Tensor, max_shift: int = 1, mirror: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Every shift of sprites x (N, H, W, C) by -max_shift..max_shift pixels in y and in x, each
    also mirrored left-right when ``mirror``: ``(copies (V, N, H, W, C), valid (V, H, W, C))``,
    where the gap a shift opens is 0 in the copies and False in ``valid``."""
    h, w = x.shape[1:3]
    copies, valid = [], []
    for src in (x, x.flip(2)) if mirror else (x,):
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
                y = torch.zeros_like(src)
                y[:, ys, xs] = src[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
                m = torch.zeros(x.shape[1:], dtype=torch.bool)
                m[ys, xs] = True
                copies.append(y)
                valid.append(m)
    return torch.stack(copies), torch.stack(valid)


def distinct_sprites(images) -> np.ndarray:
    """The distinct sprites of a set, (M, H, W, 3) uint8: ``np.unique`` over the flattened rows."""
    x = _as_uint8_hwc(images)
    return np.unique(x.reshape(len(x), -1), axis=0).reshape(-1, *x.shape[1:])


def novelty(
    generated, train_images, threshold: float = NOVELTY_THRESHOLD, *, distinct: bool = False, batch_size: int = 64
) -> dict:
    """The share of generated sprites that are near-copies of a training sprite.

    generated: (N, 3, H, W) in [-1, 1] or (N, H, W, 3) uint8 (the float ones are rounded to
    uint8 first, as a saved sprite would be); train_images: the same kinds, deduplicated here
    with ``np.unique`` on rows (pass ``distinct=True`` if they already are). With pixels in
    [0, 1] and D = H * W * 3, the distance of a generated sprite g to the training set is

        d(g) = min over training sprites s, over the 18 copies g' of g (shifted by -1, 0 or 1
               pixel in y and in x, and mirrored) of sqrt(sum_valid (g' - s)^2 / D_valid)

    the RMS pixel difference to its nearest training sprite, forgiving the 1-pixel shifts and
    mirrors the set is augmented with; the row or column a shift empties is left out of the
    sum (D_valid is the number of pixel values compared), so a copy pushed one pixel off the
    edge still matches. A near-copy is ``d(g) < threshold``.

    How the threshold 0.05 was chosen, on the course's sprite set (1,000 distinct sprites
    drawn at random, base drawings found by matching shifted and mirrored centres):

    - copies must fall below it: a training sprite shifted by a pixel (even off the edge) or
      mirrored is at d = 0; with Gaussian pixel noise of sd 0.02 / 0.03 / 0.05 (5 / 8 / 13 of
      255 levels) it is at most 0.020 / 0.029 / 0.049. (The raw RMS of a 1-pixel shift is 0.10
      to 0.29, median 0.22, above many pairs of different drawings: that is why shifts are
      undone rather than covered by the threshold.)
    - different drawings must stay above it: the nearest sprite of another base drawing is at
      0.052 or more for every non-hero, food and spell sprite (least 0.145, 0.106 and 0.052
      respectively; the 0.052 pair is two phases of the moon). Among hero and side-facing
      figures 58% and 75% have one closer than 0.05, and those are the same figure in another
      skin tone (OpenMoji draws five) or a near-identical man / woman / person variant, fairly
      called copies. By eye, pairs below 0.05 look the same; from about 0.07 hair colour,
      clothing or pose differ.

    Returns a dict: ``share`` (of near-copies), ``n_copies``, ``n``, ``threshold``,
    ``distances`` (N,) float array, ``nearest`` (N,) indices into the distinct training
    sprites, ``n_train_distinct``.
    """
    gen = _as_uint8_hwc(generated)
    train = _as_uint8_hwc(train_images)
    if not distinct:
        train = distinct_sprites(train)
    if gen.shape[1:] != train.shape[1:]:
        raise ValueError(f"Generated sprites {gen.shape[1:]} and training sprites {train.shape[1:]} differ in size.")
    d = int(np.prod(train.shape[1:]))
    t = torch.from_numpy(train.reshape(len(train), d)).float().div_(255)
    g = torch.from_numpy(gen).float().div_(255)
    _, valid = _shifted_copies(g[:1])
    valid = valid.flatten(1).float()  # (V, D)
    t2 = (t * t) @ valid.T  # (M, V): sum of s^2 over each copy's valid pixels
    n_valid = valid.sum(1)  # (V,)
    dist = np.empty(len(gen))
    nearest = np.empty(len(gen), dtype=np.int64)
    for i in range(0, len(gen), batch_size):
        q = _shifted_copies(g[i : i + batch_size])[0].flatten(2)  # (V, B, D), 0 in the gaps
        d2 = (q * q).sum(-1, keepdim=True) + t2.T[:, None, :] - 2 * q @ t.T  # (V, B, M)
        rms2 = d2 / n_valid[:, None, None]
        best, idx = rms2.min(-1)  # (V, B)
        best_v, v = best.min(0)  # (B,)
        dist[i : i + batch_size] = best_v.clamp_min(0).sqrt().numpy()
        nearest[i : i + batch_size] = idx.gather(0, v[None]).squeeze(0).numpy()
    copies = dist < threshold
    return {
        "share": float(copies.mean()) if len(gen) else None,
        "n_copies": int(copies.sum()),
        "n": len(gen),
        "threshold": float(threshold),
        "distances": dist,
        "nearest": nearest,
        "n_train_distinct": len(train),
    }


def _sampler_steps(schedule: du.DDPMSchedule, sampler: str, steps: int | None) -> tuple[int | None, int]:
    """(the ``steps`` to pass to the sampler, None for all T DDPM steps; network steps per batch).

    ``steps=None`` is the sampler's default: all T steps for "ddpm", the default of the
    sampler's ``steps`` argument otherwise. A DDPM run on all T steps is passed as None.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if steps is None and sampler != "ddpm":
        steps = list(inspect.signature(SAMPLERS[sampler]).parameters.values())[3].default
    if steps is None or (sampler == "ddpm" and steps == schedule.T):
        return None, schedule.T
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= schedule.T:
        raise ValueError(f"steps must be a whole number from 1 to T = {schedule.T}, got {steps!r}.")
    return int(steps), len(schedule.step_sequence(int(steps))) - 1


def _positive_count(n, what: str) -> int:
    """``n`` as an int >= 1, or a ValueError naming ``what``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {n!r}.")
    return int(n)


def draw_sprites(
    model,
    schedule: du.DDPMSchedule,
    n_sample: int,
    sampler: str = "ddpm",
    steps: int | None = None,
    context=None,
    guide_w: float = 0.0,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
    desc: str = "sampling",
) -> torch.Tensor:
    """Draw ``n_sample`` sprites in batches with one of ``SAMPLERS``; (n_sample, 3, H, W) on the CPU.

    steps: None for the sampler's default (all T steps for "ddpm"). context: None
    (unconditional) or (n_sample, n_cfeat). One ``torch.Generator`` seeded with ``seed`` draws
    all the noise, so the result depends only on the arguments (and not on the device's random
    state). One progress bar counts network steps over all batches.
    """
    steps, per_batch = _sampler_steps(schedule, sampler, steps)
    n_sample = _positive_count(n_sample, "n_sample")
    batch_size = _positive_count(batch_size, "batch_size")
    if context is not None:
        context = torch.as_tensor(context, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    n_batches = math.ceil(n_sample / batch_size)
    label = f"{desc} ({sampler}, {per_batch} steps)"
    sample = SAMPLERS[sampler]
    out = []
    with tqdm(total=n_batches * per_batch, desc=label, unit="step", disable=not progress, leave=False) as bar:
        for i in range(0, n_sample, batch_size):
            m = min(batch_size, n_sample - i)
            c = None if context is None else context[i : i + m]
            kwargs = dict(context=c, guide_w=guide_w, generator=generator, progress=False, save_rate=None)
            kwargs["callback"] = lambda t, x: bar.update(1)
            if steps is None:  # DDPM on all T steps: the sampler's default
                x = sample(model, schedule, m, **kwargs)[0]
            else:
                x = sample(model, schedule, m, steps, **kwargs)[0]
            out.append(x.detach().float().cpu())
    return torch.cat(out)


def evaluate(
    model,
    schedule: du.DDPMSchedule,
    sampler: str = "ddpm",
    steps: int | None = None,
    n_per_class: int = 100,
    n_fd: int = 1000,
    guide_w: float = 0.0,
    seed: int = 0,
    *,
    classifier: SpriteClassifier | None = None,
    classifier_card: dict | None = None,
    data_dir=None,
    batch_size: int = 250,
    progress: bool = True,
) -> dict:
    """How good are the sprites of ``model``: context accuracy, sprite FD and novelty, in one dict.

    1. Context accuracy: ``n_per_class`` sprites drawn with each one-hot context (and guidance
       ``guide_w``), judged by the sprite classifier (``load_or_train_classifier`` unless one is
       given): the share classified as the class asked for, per class and overall. ``n_per_class``
       0 skips it (a model trained without context follows none): ``context_accuracy`` is None.
    2. Sprite FD (skipped when ``n_fd`` is 0): ``frechet_distance`` in the classifier's
       penultimate features between ``n_fd`` unconditional sprites (context None) and ``n_fd``
       real sprites from the classifier's held-out split; beside it the floor, the FD between
       those and another, disjoint set of ``n_fd`` held-out real sprites (what a perfect
       generator would get, up to sampling noise), and the ratio FD / floor. FD of the
       class-conditional sprites against the same real set is reported too (its sample size
       is 5 * n_per_class, so compare it with care).
    3. Novelty: ``novelty`` of all generated sprites against the whole sprite set (what the
       diffusion model was trained on): the share of near-copies.

    Sampling: ``draw_sprites`` with ``sampler`` (a name of ``SAMPLERS``) and ``steps`` (None:
    all T steps for DDPM, the sampler's default otherwise), seeds ``seed`` (conditional) and ``seed + 1``
    (unconditional). All three judge the sprites as they would be saved: clipped to [-1, 1]
    and rounded to uint8 (``tensor_to_images``). Returns a JSON-ready dict; ``seconds`` holds
    the time of each part.
    """
    start = time.time()
    seconds = {}
    n, _ = _sampler_steps(schedule, sampler, steps)
    if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or n_per_class < 0:
        raise ValueError(f"n_per_class must be a whole number >= 0 (0: no context accuracy), got {n_per_class!r}.")
    if isinstance(n_fd, bool) or int(n_fd) != n_fd or n_fd < 0 or n_fd == 1:
        raise ValueError(f"n_fd must be 0 (no FD) or a whole number >= 2, got {n_fd!r}.")
    if n_per_class == 0 and n_fd == 0:
        raise ValueError("n_per_class and n_fd are both 0: nothing to measure; give at least one of them.")
    images, labels = du.load_sprites(*du.sprite_files(data_dir))
    t0 = time.time()
    if classifier is None:
        classifier, classifier_card = load_or_train_classifier(data_dir=data_dir, progress=progress)
    classifier_card = classifier_card or {}
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    classifier = classifier.to(device).eval()
    n_classes = classifier.n_classes
    if getattr(model, "n_cfeat", n_classes) != n_classes:
        raise ValueError(f"The model takes {model.n_cfeat} context classes but the classifier knows {n_classes}.")
    split = classifier_card.get("split", {"held_out": 0.1, "seed": 0})
    _, held_idx = split_indices(len(images), split["held_out"], split["seed"])
    if n_fd and 2 * n_fd > len(held_idx):
        raise ValueError(
            f"n_fd = {n_fd} needs 2 x {n_fd} held-out real sprites for the FD and its floor; "
            f"the held-out split has {len(held_idx)}."
        )
    seconds["classifier"] = time.time() - t0

    t0 = time.time()
    acc = None
    conditional = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
    if n_per_class:
        requested = torch.arange(n_classes).repeat_interleave(n_per_class)
        contexts = F.one_hot(requested, n_classes).float()
        conditional = draw_sprites(
            model, schedule, len(contexts), sampler, n, contexts, guide_w, seed, batch_size, progress, "class sprites"
        )
        conditional = tensor_to_images(conditional)  # judged as saved: clipped, rounded to uint8
        seconds["sample_conditional"] = time.time() - t0
        t0 = time.time()
        names = list(du.CLASSES) if n_classes == len(du.CLASSES) else [str(c) for c in range(n_classes)]
        acc = context_accuracy(classifier, conditional, requested, names)
        seconds["context_accuracy"] = time.time() - t0

    fd = None
    unconditional = conditional[:0]
    if n_fd:
        t0 = time.time()
        unconditional = draw_sprites(
            model, schedule, n_fd, sampler, n, None, 0.0, seed + 1, batch_size, progress, "free sprites"
        )
        unconditional = tensor_to_images(unconditional)
        seconds["sample_unconditional"] = time.time() - t0
        t0 = time.time()
        floors, f_real_a = fd_floors(classifier, images, labels, load_designs(data_dir), held_idx, n_fd, seed)
        f_gen = predict_logits(classifier, unconditional, features=True)
        f_cond = predict_logits(classifier, conditional, features=True) if len(conditional) >= 2 else None
        fd_gen = frechet_distance(f_gen, f_real_a)
        new_floor = floors["new_drawings_floor"]
        fd = {
            "n": n_fd,
            "generated": fd_gen,
            "generated_ci95": fd_interval(f_gen, f_real_a, seed=seed),
            **floors,
            "ratio": fd_gen / floors["real_floor"] if floors["real_floor"] > 0 else None,
            "ratio_new_drawings": fd_gen / new_floor if new_floor else None,
            "conditional": frechet_distance(f_cond, f_real_a) if f_cond is not None else None,
            "n_conditional": len(conditional),
            "feature_dim": int(f_gen.shape[1]),
        }
        seconds["fd"] = time.time() - t0

    t0 = time.time()
    train = distinct_sprites(images)
    nov_cond = novelty(conditional, train, distinct=True) if len(conditional) else None
    nov_free = novelty(unconditional, train, distinct=True) if len(unconditional) else None
    parts = [x for x in (nov_cond, nov_free) if x]
    n_copies, n_all = sum(x["n_copies"] for x in parts), sum(x["n"] for x in parts)
    novel = {
        "share": n_copies / n_all,
        "n_copies": n_copies,
        "n": n_all,
        "share_conditional": nov_cond["share"] if nov_cond else None,
        "share_unconditional": nov_free["share"] if nov_free else None,
        "threshold": parts[0]["threshold"],
        "median_distance": float(np.median(np.concatenate([x["distances"] for x in parts]))),
        "n_train_distinct": parts[0]["n_train_distinct"],
    }
    seconds["novelty"] = time.time() - t0
    seconds["total"] = time.time() - start
    return {
        "sampler": sampler,
        "steps": n if n is not None else schedule.T,
        "guide_w": float(guide_w),
        "seed": seed,
        "n_per_class": int(n_per_class),
        "n_conditional": len(conditional),
        "device": str(device),
        "context_accuracy": acc,
        "fd": fd,
        "novelty": novel,
        "classifier": {
            "held_out_accuracy": classifier_card.get("held_out_accuracy"),
            "split": split,
            "feature_dim": classifier.feature_dim,
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_interval(interval, pct: bool = False) -> str:
    """' (95%: 74.1-80.2%)' for an interval, '' when there is none (files written before intervals)."""
    if not interval:
        return ""
    lo, hi = interval
    return f" (95%: {100 * lo:.1f}-{100 * hi:.1f}%)" if pct else f" (95%: {lo:.2f}-{hi:.2f})"


def evaluation_markdown(result: dict, title: str | None = None) -> str:
    """The figures of an ``evaluate`` result as a markdown table (one measure per row), with 95% intervals."""
    r = result
    head = title or "Sprite evaluation"
    guide = f", guidance {r['guide_w']:g}" if r["guide_w"] else ""
    acc = r["context_accuracy"]
    lines = [
        f"### {head}",
        "",
        f"Sampler {r['sampler']}, {r['steps']} steps{guide}, seed {r['seed']}, on {r['device']}.",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    if acc is None:
        lines.append("| context accuracy | not measured (n_per_class 0: a model without context) |")
    else:
        lines.append(
            f"| context accuracy, overall ({r['n_conditional']} sprites) | {_pct(acc['overall'])}"
            f"{format_interval(acc.get('overall_ci95'), pct=True)} |"
        )
        for name, share in acc["per_class"].items():
            interval = (acc.get("per_class_ci95") or {}).get(name)
            lines.append(f"| context accuracy, {name} | {_pct(share)}{format_interval(interval, pct=True)} |")
    fd = r.get("fd")
    if fd:
        lines += [
            f"| sprite FD, generated without context vs real (n = {fd['n']}) | {fd['generated']:.2f}"
            f"{format_interval(fd.get('generated_ci95'))} |",
            f"| floor, same drawings: two random real sets of {fd['n']} | {fd['real_floor']:.2f}"
            f"{format_interval(fd.get('real_floor_ci95'))} |",
        ]
        if fd.get("new_drawings_floor") is not None:
            lines.append(
                f"| floor, new drawings: real sets of {fd['n']} from disjoint halves of the designs | "
                f"{fd['new_drawings_floor']:.2f}{format_interval(fd.get('new_drawings_floor_ci95'))} |"
            )
        ratios = f"{fd['ratio']:.1f} (same drawings)" if fd["ratio"] is not None else "n/a"
        if fd.get("ratio_new_drawings") is not None:
            ratios += f", {fd['ratio_new_drawings']:.2f} (new drawings)"
        lines.append(f"| FD / floor | {ratios} |")
        if fd.get("conditional") is not None:
            n_pair = f"n = {fd['n_conditional']} vs {fd['n']}"
            lines.append(f"| sprite FD, class sprites vs real ({n_pair}) | {fd['conditional']:.2f} |")
    nov = r["novelty"]
    lines.append(
        f"| near-copies of a training sprite (RMS < {nov['threshold']:g}) | {_pct(nov['share'])} "
        f"({nov['n_copies']} of {nov['n']}) |"
    )
    lines.append(f"| median distance to the nearest training sprite (RMS) | {nov['median_distance']:.3f} |")
    judge = r["classifier"].get("held_out_accuracy")
    lines.append(
        f"| judge: sprite classifier, held-out accuracy | {'n/a' if judge is None else f'{100 * judge:.2f}%'} |"
    )
    secs = ", ".join(f"{k} {v:g}" for k, v in r["seconds"].items())
    lines += ["", f"Seconds: {secs}."]
    if fd:
        lines += [
            "",
            "The same-drawings floor compares two real sets that share their drawings (the sprites are shifts "
            "and mirrors of the same renders): a model that copies the set gets near it. The new-drawings floor "
            "compares real sprites of disjoint designs: what a model that draws new sprites can hope for.",
        ]
    return "\n".join(lines) + "\n"
