import json
import pickle

import pytest
import torch

from engine.jobs import InputError, ModelFileError
from engine.formats.modelfile import SCHEMA_VERSION, load_model, read_card, save_model
from tests.conftest import make_model


def test_roundtrip_gives_identical_weights_and_card(tmp_path):
    path = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    m1, m2 = load_model(path), load_model(path)
    x = torch.randn(1, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(m1.network(image=x), m2.network(image=x))
    assert m1.card == read_card(path)
    assert m1.card["schema_version"] == SCHEMA_VERSION
    assert m1.band_names == ["R", "G", "B", "NIR"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("reader", [load_model, read_card])
@pytest.mark.parametrize("via", ["pickle", "torch.save"])
def test_pickle_payload_is_refused_without_running(tmp_path, via, reader):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.rsmodel"
    if via == "pickle":
        evil.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"state_dict": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match="pickle"):
        reader(evil)
    assert not marker.exists(), "the payload ran"


def test_corrupt_and_truncated_files(tmp_path):
    good = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    data = good.read_bytes()
    (tmp_path / "trunc.rsmodel").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.rsmodel").write_bytes(b"\x00" * 100)
    for name in ("trunc.rsmodel", "junk.rsmodel"):
        with pytest.raises(ModelFileError, match="not a readable RS Seg model"):
            load_model(tmp_path / name)
    with pytest.raises(ModelFileError, match="not a readable RS Seg model"):
        read_card(tmp_path / "junk.rsmodel")
    for reader in (load_model, read_card):
        with pytest.raises(InputError, match="does not exist"):
            reader(tmp_path / "absent.rsmodel")


def test_read_card_reads_the_header_only(tmp_path, monkeypatch):
    """Listing models must not read their weights (model managers list many large files)."""
    path = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    expected = load_model(path).card

    def no_whole_file(self):
        raise AssertionError(f"read the whole of {self}")

    monkeypatch.setattr(type(path), "read_bytes", no_whole_file)
    assert read_card(path) == expected


def _rewrite_card(src, dst, change):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    card = json.loads(meta["card"])
    change(card)
    meta["card"] = json.dumps(card)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_newer_schema_is_refused_with_update_hint(tmp_path):
    good = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    newer = _rewrite_card(good, tmp_path / "new.rsmodel",
                          lambda c: c.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(ModelFileError, match="newer RS Seg.*Update"):
        load_model(newer)


def test_card_problems_are_named(tmp_path):
    good = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    bad = _rewrite_card(good, tmp_path / "bad.rsmodel",
                        lambda c: c["inputs"]["image"].update(std=[1.0]))
    with pytest.raises(ModelFileError, match="one value per band"):
        read_card(bad)
    wrong = _rewrite_card(good, tmp_path / "w.rsmodel", lambda c: c["hparams"].update(base=8))
    with pytest.raises(ModelFileError, match="do not match architecture"):
        load_model(wrong)


def test_safetensors_without_card_is_not_a_model(tmp_path):
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="no model card"):
        load_model(tmp_path / "plain.safetensors")


def test_save_is_atomic_on_failure(tmp_path):
    path = make_model(tmp_path / "m.rsmodel", base=4, depth=2)
    before = path.read_bytes()
    card = read_card(path)
    card["classes"] = []
    with pytest.raises(ModelFileError):
        save_model(path, card, torch.nn.Linear(1, 1))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.rsmodel"]
