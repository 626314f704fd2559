import numpy as np

from biofm.train.masking import MaskSpec, mask_batch

SPEC = MaskSpec(mask_id=2, special_ids=(0, 1, 3, 4), random_ids=np.arange(5, 30), prob=0.15)


def _ids(n=64, length=200, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 30, size=(n, length))
    ids[:, 0] = 3  # <cls>
    ids[:, -20:] = 1  # padding
    return ids


def test_specials_never_selected_and_rate_close_to_15_percent():
    ids = _ids()
    _, sel = mask_batch(ids, np.arange(len(ids)), 0, SPEC)
    assert not sel[:, 0].any() and not sel[:, -20:].any()
    rate = sel[:, 1:-20].mean()
    assert 0.13 < rate < 0.17


def test_80_10_10_split():
    ids = _ids(n=256)
    inputs, sel = mask_batch(ids, np.arange(len(ids)), 0, SPEC)
    masked = (inputs[sel] == SPEC.mask_id).mean()
    unchanged = (inputs[sel] == ids[sel]).mean()
    assert 0.77 < masked < 0.83
    assert 0.09 < unchanged < 0.13  # 10% kept + random draws that hit the same token


def test_honest_masks_every_selected_token():
    ids = _ids()
    inputs, sel = mask_batch(ids, np.arange(len(ids)), 0, SPEC, honest=True)
    assert (inputs[sel] == SPEC.mask_id).all()
    assert (inputs[~sel] == ids[~sel]).all()


def test_mask_depends_on_example_key_not_batch_composition():
    ids = _ids()
    full_inputs, full_sel = mask_batch(ids, np.arange(64), 7, SPEC)
    part_inputs, part_sel = mask_batch(ids[10:20], np.arange(10, 20), 7, SPEC)
    assert (full_sel[10:20] == part_sel).all() and (full_inputs[10:20] == part_inputs).all()
    _, other = mask_batch(ids, np.arange(64), 8, SPEC)
    assert (other != full_sel).any()
