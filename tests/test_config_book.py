import pytest
import torch

from lrpbook import book, config


@pytest.mark.parametrize(
    "value, is_full", [("1", True), ("TRUE", True), ("off", False), ("", False)]
)
def test_full_and_quick_read_lrpbook_full(monkeypatch, value, is_full):
    monkeypatch.setenv("LRPBOOK_FULL", value)
    assert config.full() is is_full
    assert config.quick() is (not is_full)


def test_unknown_lrpbook_full_value_is_an_error(monkeypatch):
    monkeypatch.setenv("LRPBOOK_FULL", "maybe")
    with pytest.raises(ValueError, match="LRPBOOK_FULL"):
        config.quick()


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("LRPBOOK_DATA", raising=False)
    assert config.data_root() is None
    monkeypatch.setenv("LRPBOOK_DATA", str(tmp_path))
    assert config.data_root() == tmp_path
    monkeypatch.setenv("LRPBOOK_DATA", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not an existing folder"):
        config.data_root()


def test_device_override_and_default(monkeypatch):
    monkeypatch.setenv("LRPBOOK_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
    monkeypatch.setenv("LRPBOOK_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="LRPBOOK_DEVICE"):
        config.device()
    monkeypatch.delenv("LRPBOOK_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.device().type == expected
    assert "mode on" in config.describe()


def test_show_source_gives_the_live_source_in_html_and_markdown():
    listing = book.show_source(config.quick)
    assert listing.code.startswith("def quick() -> bool:")
    assert "lrpbook.config.quick" in listing.title
    assert "<pre>" in listing._repr_html_() and "quick" in listing._repr_html_()
    assert listing._repr_markdown_().startswith("`lrpbook.config.quick")
    assert book.show_source("lrpbook.boxes.box_iou").code.startswith("def box_iou(")


def test_show_source_of_builtin_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot show the source"):
        book.show_source(len)
