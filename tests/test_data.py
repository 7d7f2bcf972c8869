"""The data layer: the course file format, the transform, and clear errors for bad files."""

import numpy as np
import pytest
import torch
from conftest import du, write_sprites
from evaluation import tensor_to_images


def test_dataset_reads_the_course_format(tmp_path):
    s, lab = write_sprites(tmp_path, n=12)
    ds = du.CustomDataset(s, lab, du.transform)
    image, label = ds[3]
    assert len(ds) == 12 and image.shape == (3, 16, 16) and label.shape == (5,)
    raw = np.load(s)[3]
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), raw / 127.5 - 1, atol=1e-6)
    assert torch.equal(label, torch.from_numpy(np.load(lab)[3]))


def test_transform_maps_0_255_to_minus_one_one():
    img = np.array([[[0, 255, 51]]], dtype=np.uint8)
    np.testing.assert_allclose(du.transform(img).flatten().numpy(), [-1.0, 1.0, 51 / 127.5 - 1], atol=1e-6)


def test_null_context_gives_zero_contexts(tmp_path):
    s, lab = write_sprites(tmp_path)
    ds = du.CustomDataset(s, lab, du.transform, null_context=True)
    assert torch.count_nonzero(ds.tensors()[1]) == 0


def test_a_custom_transform_is_applied_per_item(tmp_path):
    s, lab = write_sprites(tmp_path)
    ds = du.CustomDataset(s, lab, transform=lambda im: torch.full((3, 16, 16), float(im[0, 0, 0])))
    assert ds[0][0][0, 0, 0] == float(np.load(s)[0, 0, 0, 0])


def test_uint8_roundtrip_through_tensors():
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_images(du.images_to_tensor(images)), images)


def test_missing_file_names_it(tmp_path):
    _, lab = write_sprites(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nothere\.npy"):
        du.CustomDataset(tmp_path / "nothere.npy", lab)


@pytest.mark.parametrize(
    "images, labels, bad, match",
    [
        (np.zeros((4, 16, 16), np.uint8), np.zeros((4, 5), np.float32), "img", r"\(N, H, H, 3\)"),
        (np.zeros((4, 16, 12, 3), np.uint8), np.zeros((4, 5), np.float32), "img", r"\(N, H, H, 3\)"),
        (np.zeros((4, 16, 16, 3), np.float32), np.zeros((4, 5), np.float32), "img", "uint8"),
        (np.zeros((4, 18, 18, 3), np.uint8), np.zeros((4, 5), np.float32), "img", "divisible by 4"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.zeros((4,), np.float32), "lab", r"\(N, n_cfeat\)"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.zeros((4, 5), np.int64), "lab", "float"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.zeros((3, 5), np.float32), "lab", "3 labels but"),
    ],
)
def test_bad_arrays_get_a_value_error_naming_the_file(tmp_path, images, labels, bad, match):
    s, lab = tmp_path / "img.npy", tmp_path / "lab.npy"
    np.save(s, images)
    np.save(lab, labels)
    with pytest.raises(ValueError, match=match) as err:
        du.CustomDataset(s, lab)
    assert f"{bad}.npy" in str(err.value)


def test_a_non_npy_file_is_a_value_error(tmp_path):
    s, lab = write_sprites(tmp_path)
    s.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"sprites_16x16\.npy"):
        du.CustomDataset(s, lab)


def test_original_course_files_are_preferred_when_present(tmp_path):
    write_sprites(tmp_path)
    assert du.sprite_files(tmp_path)[0].name == "sprites_16x16.npy"
    for name in du.COURSE_SPRITES:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in du.sprite_files(tmp_path)] == list(du.COURSE_SPRITES)


def test_no_sprite_set_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        du.sprite_files(tmp_path)
