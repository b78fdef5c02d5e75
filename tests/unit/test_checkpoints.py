"""Safe checkpoint loading: official formats load as plain data, code-carrying pickles are refused."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest
import torch

from app.engine.checkpoints import CheckpointError, check_state_dict, load_checkpoint, weights_of
from tests.conftest import conformance_dir, generate_weights

MARKER_ENV = "GSV_TEST_PWNED"


class _Evil:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": {}, "config": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pth.*not plain weights"):
        load_checkpoint(path)
    assert not marker.exists()


def test_evil_pickle_behind_a_version_header_is_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    bio = io.BytesIO()
    torch.save({"weight": {}, "config": _Evil(marker)}, bio)
    path = tmp_path / "evil_v2pro.pth"
    path.write_bytes(b"05" + bio.getvalue()[2:])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"weight": {}}))
    with pytest.raises(CheckpointError, match="unknown file header"):
        load_checkpoint(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    good = generate_weights("s1_v1_tiny", 5)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.ckpt.*(corrupt|truncated)"):
        load_checkpoint(cut)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "zip.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def _layouts(prefixes):
    folder = conformance_dir() / "layouts"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if p.stem.startswith(prefixes) and p.stem.endswith("_tiny"))


@pytest.mark.conformance
@pytest.mark.parametrize("layout", _layouts(("s1_", "sovits_")))
def test_official_formats_load_as_plain_data_with_every_key_and_shape(layout):
    spec = json.loads((conformance_dir() / "layouts" / f"{layout}.json").read_text(encoding="utf-8"))
    path = generate_weights(layout, 3)
    checkpoint = load_checkpoint(path)
    assert isinstance(checkpoint["config"], dict)
    assert json.loads(json.dumps(checkpoint["config"])) == checkpoint["config"]  # plain data only
    expected = {key: tuple(shape) for key, shape, _ in spec["tensors"]}
    check_state_dict(weights_of(checkpoint, path), expected, path)


def test_state_dict_check_names_missing_unexpected_and_misshaped_keys(tmp_path):
    state = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "extra": torch.zeros(1), "enc_q.x": torch.zeros(1)}
    expected = {"a": (2, 3), "b": (5,), "c": (1,)}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(state, expected, tmp_path / "model.pth", ignore_unexpected=("enc_q.",))
    message = str(info.value)
    assert "model.pth" in message and "missing keys: c" in message
    assert "unexpected keys: extra" in message and "enc_q" not in message
    assert "b (4,) != (5,)" in message
    check_state_dict({"a": torch.zeros(2, 3)}, {"a": (2, 3)}, "ok.pth")


def test_checkpoint_without_weight_dict(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"state": 1}, path)
    with pytest.raises(CheckpointError, match="no 'weight'"):
        weights_of(load_checkpoint(path), path)
