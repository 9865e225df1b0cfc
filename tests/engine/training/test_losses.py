import pytest
import torch

from engine.jobs import InputError
from engine.training.losses import IGNORE, build_loss, enhancement_weights


def test_enhancement_weights_follow_the_documented_formula():
    # 4×4 map: class 0 covers 12 px, class 1 covers 3 px, one pixel ignored; class 2 absent.
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    t[0, 0, :3] = 1
    t[0, 3, 3] = IGNORE
    w = enhancement_weights(t, num_classes=3)
    p0, p1 = 12 / 15, 3 / 15
    inv = [1 / p0, 1 / p1]
    expected = [min(max(v / sum(inv) * 2, 0.2), 5.0) for v in inv]
    assert w[0, 1, 1].item() == pytest.approx(expected[0])
    assert w[0, 0, 0].item() == pytest.approx(expected[1])
    assert w[0, 3, 3].item() == 0
    assert expected[1] > expected[0]  # the rare class weighs more


def test_perfect_logits_give_near_zero_losses():
    t = torch.randint(0, 3, (2, 16, 16))
    logits = torch.nn.functional.one_hot(t, 3).permute(0, 3, 1, 2).float() * 30
    for name in ("ce", "dice", "ce_dice", "enhanced_ce", "ce_boundary", "boundary"):
        assert build_loss(name)(logits, t).item() < 0.02, name
    wrong = torch.roll(logits, 1, dims=1)
    assert build_loss("ce")(wrong, t).item() > 10


def test_ignored_pixels_do_not_count():
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 0] = 5.0
    base = build_loss("ce")(logits, t).item()
    t2 = t.clone()
    t2[0, :4] = IGNORE
    logits2 = logits.clone()
    logits2[0, 1, :4] = 100.0  # terrible predictions only where ignored
    assert build_loss("ce")(logits2, t2).item() == pytest.approx(base)


def test_bce_dice_matches_two_class_ce_for_bce_part():
    t = torch.randint(0, 2, (2, 8, 8))
    logits = torch.randn(2, 2, 8, 8)
    ce = torch.nn.functional.cross_entropy(logits, t)
    total = build_loss("bce_dice")(logits, t)
    assert total.item() > ce.item()  # BCE (== CE here) plus a positive Dice term
    perfect = torch.nn.functional.one_hot(t, 2).permute(0, 3, 1, 2).float() * 30
    assert build_loss("bce_dice")(perfect, t).item() < 0.01


def test_deep_supervision_adds_weighted_aux_terms():
    t = torch.randint(0, 3, (1, 16, 16))
    main = torch.randn(1, 3, 16, 16)
    aux = torch.randn(1, 3, 8, 8)
    plain = build_loss("ce")(main, t)
    both = build_loss("ce", aux_weight=0.2)({"logits": main, "aux_logits": [aux]}, t)
    up = torch.nn.functional.interpolate(aux, size=(16, 16), mode="bilinear", align_corners=False)
    assert both.item() == pytest.approx(plain.item() + 0.2 * build_loss("ce")(up, t).item(), rel=1e-5)


def test_unknown_loss():
    with pytest.raises(InputError, match="available"):
        build_loss("focal-ish")
