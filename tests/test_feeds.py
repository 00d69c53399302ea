"""Product feeds (vrec/ingest/feeds.py): the real Google and Shopify feeds of the grocery set, and
small feeds written here for each layout, format and mistake a merchandiser may make."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from vrec.base.errors import CatalogError
from vrec.ingest.feeds import is_feed_file, looks_like_feed, parse_price, read_feed

GROCERY = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "grocery-products"


def grocery(name: str) -> Path:
    if not (GROCERY / name).is_file():
        pytest.skip(f"{GROCERY} is absent (the shared datasets are not in a user's checkout)")
    return GROCERY / name


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def photos_of(feed, product: str) -> list[str]:
    return [p.location for p in feed.photos if p.product == product]


# --- the real feeds ---------------------------------------------------------------------------

def test_google_feed_of_the_grocery_set():
    feed = read_feed(grocery("feed.csv"))
    assert feed.format == "google"
    assert len(feed.products) == 81 and feed.products.index.name == "id"
    assert len(feed.photos) == 648 and feed.without_photos == []
    first = [p for p in feed.photos if p.product == "gs-000"]
    assert first[0].position == 1 and first[0].location == "images/gs-000/packshot.jpg"
    assert [p.position for p in first] == list(range(1, 9))
    assert all(p.location.endswith("packshot.jpg") for p in feed.photos if p.position == 1)
    assert {"item_group_id", "title", "description", "product_type"} <= set(feed.products.columns)
    assert not {"image_link", "additional_image_link", "id"} & set(feed.products.columns)
    assert feed.products.loc["gs-000", "title"] == "Golden Delicious"
    assert feed.group_column == "item_group_id"
    assert "a Google Merchant feed: 81 products, 648 photos" in feed.notes[0]


def test_shopify_export_of_the_grocery_set_gives_the_same_products_and_photos():
    google = read_feed(grocery("feed.csv"))
    shop = read_feed(grocery("shopify.csv"))
    assert shop.format == "shopify"
    assert len(shop.products) == 81 and len(shop.photos) == 648
    handles = pd.read_csv(grocery("shopify.csv"))["Handle"].drop_duplicates().tolist()
    assert shop.products.index.tolist() == handles
    # the same photo order, product by product, though the ids differ (gs-000 vs golden-delicious)
    assert [p.location for p in shop.photos] == [p.location for p in google.photos]
    assert [p.position for p in shop.photos] == [p.position for p in google.photos]
    assert shop.products["title"].tolist() == google.products["title"].tolist()
    assert "<p>" not in shop.products.loc["golden-delicious", "description"]
    assert shop.products.loc["golden-delicious", "description"].startswith("Golden Delicious has")


# --- recognising feeds ------------------------------------------------------------------------

def test_feed_files_by_suffix_and_layouts_by_columns():
    assert is_feed_file("a/feed.csv") and is_feed_file("feed.TSV.gz") and is_feed_file("x.ndjson")
    assert not is_feed_file("photo.jpg") and not is_feed_file("feed.gz") and not is_feed_file("feed.xml")
    assert looks_like_feed(["id", "title", "image_link"]) == "google"
    assert looks_like_feed(["Handle", "Title", "Image Src"]) == "shopify"
    assert looks_like_feed(["id", "file", "title"]) is None


# --- custom layouts and formats ---------------------------------------------------------------

def test_custom_columns_each_option(tmp_path):
    path = write(tmp_path, "catalog.csv",
                 "sku,name,line,front,back\n"
                 "A1,Tote,bags,https://x.test/a1.jpg,\"a1-side.jpg, a1-back.jpg\"\n"
                 "B2,Belt,belts,b2.jpg,\n")
    with pytest.raises(CatalogError, match="--id-column and --image-column") as e:
        read_feed(path)
    assert "'sku'" in str(e.value) and "'front'" in str(e.value)
    feed = read_feed(path, id_column="sku", image_columns=["front", "back"], group_column="line", title_column="name")
    assert feed.format == "custom"
    assert photos_of(feed, "A1") == ["https://x.test/a1.jpg", "a1-side.jpg", "a1-back.jpg"]
    assert photos_of(feed, "B2") == ["b2.jpg"]
    assert list(feed.products.columns) == ["title", "line"]
    assert feed.products.loc["A1", "title"] == "Tote" and feed.group_column == "line"
    with pytest.raises(CatalogError, match="no column 'fornt'.*Did you mean 'front'"):
        read_feed(path, id_column="sku", image_columns=["fornt"])


def test_options_override_a_google_feeds_defaults(tmp_path):
    path = write(tmp_path, "feed.csv", "id,mpn,image_link,lifestyle\n1,M-1,a.jpg,b.jpg\n")
    feed = read_feed(path, id_column="mpn", image_columns=["lifestyle"])
    assert feed.format == "google" and photos_of(feed, "M-1") == ["b.jpg"]
    assert "image_link" in feed.products.columns and "id" in feed.products.columns


def test_gzip_csv(tmp_path):
    path = tmp_path / "feed.csv.gz"
    path.write_bytes(gzip.compress(b"id,title,image_link\n007,Shoe,s.jpg\nNA,Sock,k.jpg\n"))
    feed = read_feed(path)
    assert feed.products.index.tolist() == ["007", "NA"]  # ids as written
    assert photos_of(feed, "007") == ["s.jpg"]


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "feed.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"id,image_link\n")
        for _ in range(3):
            f.write(b"\0" * (1 << 20))
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("VREC_MAX_FILE_MB", "2")
    with pytest.raises(CatalogError, match="decompresses to more than the 2 MB.*VREC_MAX_FILE_MB"):
        read_feed(path)
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CatalogError, match="not a valid gzip file"):
        read_feed(tmp_path / "bad.csv.gz")


def test_jsonl_with_a_list_of_images(tmp_path):
    rows = [{"id": "p1", "title": "Mug", "image_link": "m.jpg", "additional_image_link": ["m2.jpg", "m3.jpg"],
             "tags": ["kitchen", "gift"]},
            {"id": "p2", "title": "Cup", "image_link": "c.jpg", "additional_image_link": "c2.jpg,c3.jpg"}]
    path = write(tmp_path, "feed.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    feed = read_feed(path)
    assert photos_of(feed, "p1") == ["m.jpg", "m2.jpg", "m3.jpg"]
    assert photos_of(feed, "p2") == ["c.jpg", "c2.jpg", "c3.jpg"]
    assert json.loads(feed.products.loc["p1", "tags"]) == ["kitchen", "gift"]


def test_bad_json_line_is_named(tmp_path):
    path = write(tmp_path, "feed.ndjson", '{"id": "a", "image_link": "a.jpg"}\n\n{"id": "b", "image_link": \n')
    with pytest.raises(CatalogError, match=r"Line 3 of feed .*feed.ndjson' is not valid JSON"):
        read_feed(path)
    path = write(tmp_path, "list.jsonl", '["a", "a.jpg"]\n')
    with pytest.raises(CatalogError, match="Line 1 .* not an object"):
        read_feed(path)


def test_parquet_with_list_images_and_numbers(tmp_path):
    df = pd.DataFrame({"id": [101, 102], "image_link": ["a.jpg", "b.jpg"],
                       "additional_image_link": [["a2.jpg"], []], "weight": [1.5, 2.0]})
    path = tmp_path / "feed.parquet"
    df.to_parquet(path)
    feed = read_feed(path)
    assert feed.products.index.tolist() == ["101", "102"]
    assert photos_of(feed, "101") == ["a.jpg", "a2.jpg"] and photos_of(feed, "102") == ["b.jpg"]
    assert feed.products["weight"].dtype.kind == "f"


def test_tsv_feed(tmp_path):
    path = write(tmp_path, "feed.tsv", "id\ttitle\timage_link\tadditional_image_link\n"
                                       "t1\tTea, green\tt.jpg\tt2.jpg,t3.jpg\n")
    feed = read_feed(path)
    assert feed.products.loc["t1", "title"] == "Tea, green"
    assert photos_of(feed, "t1") == ["t.jpg", "t2.jpg", "t3.jpg"]
    assert not any("tabs" in n for n in feed.notes)  # a .tsv is tab-separated: nothing to tell
    path = write(tmp_path, "feed.csv", "id;title;image_link\nt1;Tea, green;t.jpg\n")
    feed = read_feed(path)
    assert photos_of(feed, "t1") == ["t.jpg"] and any("semicolons" in n for n in feed.notes)


# --- mistakes ---------------------------------------------------------------------------------

def test_malformed_row_is_named(tmp_path):
    path = write(tmp_path, "feed.csv", 'id,title,image_link\na,"two\nlines",a.jpg\n\nb,Belt, brown,b.jpg\n')
    with pytest.raises(CatalogError, match=r"Row 4 of feed .* has 4 fields where the header has 3"):
        read_feed(path)
    # every row one field too long: pandas would otherwise drop the last field silently
    path = write(tmp_path, "all.csv", "id,image_link\na,Tote, red,a.jpg\nb,Belt, red,b.jpg\n")
    with pytest.raises(CatalogError, match="Row 2 of feed"):
        read_feed(path)


def test_product_without_photo_is_listed_not_refused(tmp_path):
    path = write(tmp_path, "feed.csv", "id,title,image_link,additional_image_link\n"
                                       "a,Tote,a.jpg,\"a.jpg,a2.jpg\"\nb,Belt,,\n")
    feed = read_feed(path)
    assert feed.without_photos == ["b"] and "b" in feed.products.index
    assert photos_of(feed, "a") == ["a.jpg", "a2.jpg"]
    assert any("listed twice" in n and "kept once" in n for n in feed.notes)


def test_duplicate_ids_name_both_rows(tmp_path):
    path = write(tmp_path, "feed.csv", "id,image_link\na,a.jpg\nb,b.jpg\na,c.jpg\n")
    with pytest.raises(CatalogError, match=r"product id 'a' twice \(row 2 and row 4\)"):
        read_feed(path)


def test_control_characters_and_missing_ids_are_refused(tmp_path):
    path = write(tmp_path, "feed.csv", "id,image_link\na,a.jpg\n\"b\x07\",b.jpg\n")
    with pytest.raises(CatalogError, match="Row 3 .* control character"):
        read_feed(path)
    path = write(tmp_path, "shop.csv", "Handle,Title,Image Src,Image Position\nmug,Mug,m.jpg,1\n,,x.jpg,2\n")
    with pytest.raises(CatalogError, match="Row 3 .* an image \\('x.jpg'\\) but no product id \\(column 'Handle'\\)"):
        read_feed(path)


def test_empty_feed(tmp_path):
    with pytest.raises(CatalogError, match="no products"):
        read_feed(write(tmp_path, "feed.csv", "id,image_link\n\n"))
    with pytest.raises(CatalogError, match="empty"):
        read_feed(write(tmp_path, "none.csv", ""))
    with pytest.raises(CatalogError, match="no products"):
        read_feed(write(tmp_path, "none.jsonl", "\n\n"))


# --- prices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("29.99 USD", (29.99, "USD")), ("USD 29.99", (29.99, "USD")), ("29,99 EUR", (29.99, "EUR")),
    ("$29.99", (29.99, "USD")), ("1,299.00 SEK", (1299.0, "SEK")), ("1.299,00 EUR", (1299.0, "EUR")),
    ("1 299,50 kr SEK", (None, None)), ("12", (12.0, None)), (7.5, (7.5, None)), ("", (None, None)),
    (float("nan"), (None, None)), (None, (None, None)), ("free", (None, None)), ("29.99 USD EUR", (None, None)),
])
def test_parse_price(text, expected):
    assert parse_price(text) == expected


def test_prices_become_numbers_with_a_currency(tmp_path):
    path = write(tmp_path, "feed.csv", "id,image_link,price,sale_price\n"
                                       "a,a.jpg,29.99 USD,19.99 USD\nb,b.jpg,call us,\nc,c.jpg,5 USD,\n")
    feed = read_feed(path)
    p = feed.products
    assert p.loc["a", "price"] == 29.99 and p.loc["a", "currency"] == "USD" and p.loc["a", "sale_price"] == 19.99
    assert math.isnan(p.loc["b", "price"]) and p["price"].dtype.kind == "f"
    assert p.query("price < 30").index.tolist() == ["a", "c"]
    bad = [n for n in feed.notes if "could not be read as a price" in n]
    assert len(bad) == 1 and "1 of the 3" in bad[0] and "'call us'" in bad[0]


# --- Shopify ----------------------------------------------------------------------------------

SHOPIFY = """Handle,Title,Body (HTML),Vendor,Type,Published,Option1 Name,Option1 Value,Variant SKU,Variant Price,\
Image Src,Image Position,Image Alt Text,Variant Image
tee,Tee,"<p>Soft &amp; <b>organic</b></p><ul><li>cotton</li></ul>",Acme,Shirts,TRUE,Size,S,TEE-S,19.00,\
https://cdn.test/tee-back.jpg,2,back,
tee,,,,,,,M,TEE-M,21.00,https://cdn.test/tee-front.jpg,1,front,https://cdn.test/tee-m.jpg
tee,,,,,,,L,TEE-L,21.00,https://cdn.test/tee-extra.jpg,,,https://cdn.test/tee-front.jpg
cap,Cap,<p>Cap</p>,Acme,Hats,TRUE,Title,Default Title,CAP-1,9.50,,,,
"""


def test_shopify_variants_and_photo_order(tmp_path):
    feed = read_feed(write(tmp_path, "products_export.csv", SHOPIFY))
    assert feed.format == "shopify" and feed.products.index.tolist() == ["tee", "cap"]
    assert photos_of(feed, "tee") == ["https://cdn.test/tee-front.jpg", "https://cdn.test/tee-back.jpg",
                                      "https://cdn.test/tee-extra.jpg", "https://cdn.test/tee-m.jpg"]
    assert feed.without_photos == ["cap"]
    tee = feed.products.loc["tee"]
    assert tee["title"] == "Tee" and tee["product_type"] == "Shirts" and tee["brand"] == tee["Vendor"] == "Acme"
    assert tee["price"] == 19.0 and tee["skus"] == "TEE-S, TEE-M, TEE-L" and tee["Option1 Value"] == "S, M, L"
    assert tee["description"] == "Soft & organic cotton"
    assert not {"Image Src", "Image Position", "Image Alt Text", "Variant Image", "Handle"} & set(feed.products.columns)


def test_a_quote_left_open_is_refused_not_read_as_the_next_product(tmp_path):
    feed = tmp_path / "feed.csv"
    feed.write_text('id,title,price,image_link\n'
                    'a,"unterminated,title,1,a.jpg\n'
                    'b,Real product,2,b.jpg\n'
                    'c,"A description\nover two lines",3,c.jpg\n')
    with pytest.raises(CatalogError, match=r"Row 2 .* a quote is probably not closed"):
        read_feed(feed)
    feed.write_text('id,title,price,image_link\nc,"A description\nover two lines",3,c.jpg\n')
    assert read_feed(feed).products.loc["c", "title"] == "A description\nover two lines"
