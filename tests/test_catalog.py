"""Finding images, decoding awkward files, and joining metadata."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import animated_gif, exif_rotated_jpeg, jpeg_bytes, png_16bit, png_with_alpha
from PIL import Image

from vrec.base.errors import CatalogError
from vrec.ingest.catalog import BadImage, decode_image, find_images
from vrec.ingest.metadata import read_metadata


def test_find_images_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path):
    for rel in ["b/2.JPG", "a/1.png", "a/z.webp", "c.txt", ".vrec/x.jpg", "a/.hidden.jpg", "d.TIFF"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    refs = find_images(tmp_path)
    assert [r.path for r in refs] == ["a/1.png", "a/z.webp", "b/2.JPG", "d.TIFF"]
    assert [r.id for r in refs] == ["a/1", "a/z", "b/2", "d"]


def test_ids_stay_unique_when_only_the_extension_differs(tmp_path):
    (tmp_path / "shoe.jpg").write_bytes(b"x")
    (tmp_path / "shoe.png").write_bytes(b"x")
    assert [r.id for r in find_images(tmp_path)] == ["shoe.jpg", "shoe.png"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        find_images(tmp_path / "nope")


def test_exif_orientation_is_applied():
    img = decode_image(exif_rotated_jpeg())
    assert img.size == (64, 96)  # portrait after rotating the 96x64 landscape
    assert img.info["full_size"] == (64, 96)
    # the blue block was top-left; rotated 90° clockwise it is top-right
    a = np.asarray(img)
    assert a[5, -5, 2] > 150 and a[5, 5, 2] < 100


def test_transparency_is_composited_on_white():
    a = np.asarray(decode_image(png_with_alpha()))
    assert tuple(a[2, 2]) == (255, 255, 255)  # transparent corner becomes white, not black
    assert tuple(a[32, 32]) == (10, 120, 10)


def test_cmyk_16bit_and_animation_become_rgb():
    cmyk = decode_image(jpeg_bytes(mode="CMYK"))
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[40, 80, 0] > 150  # still red
    deep = np.asarray(decode_image(png_16bit()))
    assert deep.dtype == np.uint8 and deep[0, 0, 0] == 0 and deep[-1, -1, 0] == 255
    assert decode_image(animated_gif()).mode == "RGB"


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"not an image at all", "not an image"),
    (jpeg_bytes()[:300], "damaged or truncated"),
])
def test_bad_bytes_raise_badimage_with_a_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data)


def test_decompression_bomb_is_refused(monkeypatch):
    import vrec.ingest.catalog as catalog

    monkeypatch.setattr(catalog, "MAX_PIXELS", 1000)
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(jpeg_bytes(size=(100, 100)))


def test_draft_mode_keeps_enough_pixels_and_reports_full_size():
    img = decode_image(jpeg_bytes(size=(1600, 1200)), min_size=224)
    assert min(img.size) >= 256 and img.size[0] < 1600
    assert img.info["full_size"] == (1600, 1200)


def test_metadata_joins_by_id_or_file(tmp_path, sample_dir):
    refs = find_images(sample_dir)
    meta, report = read_metadata(sample_dir / "catalog.csv", refs)
    assert report["matched"] == len(refs) == 60
    assert meta.loc["bags/bag-tote-red", "title"] == "Red tote bag"
    # an id column with file stems only (as in the fashion sample's labels.csv)
    pd.DataFrame({"id": ["1636", "9999"], "label": ["shoe", "ghost"]}).to_csv(tmp_path / "l.csv", index=False)
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "1636.jpg")
    meta, report = read_metadata(tmp_path / "l.csv", find_images(tmp_path / "img"))
    assert list(meta.index) == ["1636"] and report["unmatched_rows"] == 1


def test_metadata_without_a_key_column_is_a_clear_error(tmp_path, sample_dir):
    pd.DataFrame({"title": ["x"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(CatalogError, match="needs an 'id' column"):
        read_metadata(tmp_path / "m.csv", find_images(sample_dir))


# --- metadata files as people save them (issue 21) -----------------------------------------------

def _two_photos(tmp_path):
    folder = tmp_path / "img"
    (folder / "bags").mkdir(parents=True)
    for name in ("bags/tote-01.jpg", "bags/tote-02.jpg"):
        Image.new("RGB", (8, 8)).save(folder / name)
    return find_images(folder)


def test_metadata_with_only_a_header_is_refused(tmp_path):
    refs = _two_photos(tmp_path)
    (tmp_path / "h.csv").write_text("id,title\n")
    with pytest.raises(CatalogError, match="has a header but no rows.*left as it was"):
        read_metadata(tmp_path / "h.csv", refs)


@pytest.mark.parametrize("text", ['file,title\n"bags\\tote-01.jpg",Tote\n', "id,title\nbags\\tote-01,Tote\n",
                                  "id,title\nbags\\tote-01.jpg,Tote\n", "image,title\n.\\bags\\tote-01.jpg,Tote\n"])
def test_windows_paths_with_backslashes_match_their_photo(tmp_path, text):
    refs = _two_photos(tmp_path)
    (tmp_path / "m.csv").write_text(text)
    meta, report = read_metadata(tmp_path / "m.csv", refs)
    assert meta.loc["bags/tote-01", "title"] == "Tote" and report["matched"] == 1


@pytest.mark.parametrize("sep,name", [(";", "semicolons"), ("\t", "tabs")])
def test_metadata_separated_by_semicolons_or_tabs_is_read_with_a_note(tmp_path, sep, name):
    refs = _two_photos(tmp_path)
    (tmp_path / "m.csv").write_text(f"id{sep}title{sep}price\ntote-01{sep}Tote, large{sep}12,50\n", encoding="utf-8")
    meta, report = read_metadata(tmp_path / "m.csv", refs)
    assert meta.loc["bags/tote-01", "title"] == "Tote, large"
    assert any(f"separated by {name}" in n for n in report["notes"]), report["notes"]


def test_a_metadata_file_of_thousands_of_columns_is_one_clear_error(tmp_path):
    import warnings

    refs = _two_photos(tmp_path)
    wide = pd.DataFrame({"id": ["tote-01"], **{f"c{i}": [i] for i in range(10_000)}})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas PerformanceWarning on the way
        with pytest.raises(CatalogError, match="10,001 columns, more than the 1,000"):
            read_metadata(tmp_path / "wide.csv", refs)


def test_a_metadata_header_naming_a_column_twice_is_refused(tmp_path):
    from clihelp import fails

    photos = tmp_path / "p"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "a.jpg")
    meta = tmp_path / "m.csv"
    meta.write_text("id,title,title\na,Red,Blue\n")
    fails("embed", photos, "-m", "tiny-cnn", "--metadata", meta, "--store", tmp_path / "s", says="names the column 'title' twice")
