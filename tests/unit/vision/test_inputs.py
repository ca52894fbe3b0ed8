"""`--input` listings as people save them: Excel's UTF-8 CSV, and files that are not UTF-8."""

from __future__ import annotations

import pytest

from vision.inputs import InputError, list_inputs


def test_a_manifest_saved_by_excel_as_csv_utf8_keeps_its_path_column(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\r\na.jpg,real\r\n".encode("utf-8-sig"))  # byte-order mark, CRLF
    assert list_inputs(manifest).paths == (str(tmp_path / "a.jpg"),)
    listing = tmp_path / "files.txt"
    listing.write_bytes("a.jpg\n".encode("utf-8-sig"))
    assert list_inputs(listing).paths == (str(tmp_path / "a.jpg"),)


@pytest.mark.parametrize("name", ["m.csv", "files.txt"])
def test_a_listing_that_is_not_utf8_is_a_clear_input_error(tmp_path, name):
    source = tmp_path / name
    source.write_bytes("path\ncafé.jpg\n".encode("latin-1"))
    with pytest.raises(InputError, match=rf"{name} is not a UTF-8 .*save it as UTF-8"):
        list_inputs(source)
