"""CaFE (seed-models.md §2): shapes, label-driven training fusion vs label-free inference, CEL
weights, loss, learning, the DSM stream, gradients, size."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import engine.models.cafe as cafe  # registers "cafe"
from engine.models import architecture, build
from engine.training.config import recipe_of
from engine.training.loop import wants_targets
from engine.training.losses import IGNORE, build_loss, cross_entropy, enhancement_weights


def _tiny(bands: int = 3, aux: int = 1, classes: int = 4, seed: int = 0, **extra) -> cafe.CaFE:
    torch.manual_seed(seed)
    return cafe.build_cafe(bands, classes, aux, **{**cafe.TINY, **extra})


def _inputs(n: int = 2, bands: int = 3, aux: int = 1, h: int = 64, w: int = 64, classes: int = 4,
            seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, bands, h, w, generator=g), torch.randn(n, aux, h, w, generator=g),
            torch.randint(0, classes, (n, h, w), generator=g))


def _freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


# ---- registration, I/O -------------------------------------------------------------------------

def test_registered_as_segmentation_network_taking_targets():
    arch = architecture("cafe")
    assert arch.task == "segmentation" and arch.input_multiple == 32
    assert arch.builder is cafe.build_cafe
    model = build("cafe", in_channels=3, num_classes=4, aux_channels=1, **cafe.TINY)
    assert isinstance(model, cafe.CaFE)
    assert wants_targets(model)            # the loop passes labels in training, never in eval
    assert cafe.IGNORE == IGNORE


@pytest.mark.parametrize("bands", [3, 4])
@pytest.mark.parametrize("aux", [1, 2])
@pytest.mark.parametrize("h,w", [(64, 64), (64, 96)])
def test_forward_shapes_eval(bands, aux, h, w):
    model = _tiny(bands, aux).eval()
    image, dsm, _ = _inputs(2, bands, aux, h, w)
    with torch.inference_mode():
        out = model(image, dsm)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 4, h, w) and torch.isfinite(out).all()


@pytest.mark.parametrize("h,w", [(64, 64), (64, 96)])
def test_training_dict_layout(h, w):
    model = _tiny(4, 2).train()
    image, dsm, target = _inputs(2, 4, 2, h, w)
    res = model(image, dsm, targets=target)
    assert set(res) == {"logits", "aux_logits", "cel_weighted"}
    assert res["logits"].shape == (2, 4, h, w)
    aux = res["aux_logits"]
    sides = [(h // 16, w // 16), (h // 8, w // 8), (h // 4, w // 4), (h // 2, w // 2)]
    assert [tuple(a.shape[-2:]) for a in aux] == [(h, w)] + sides + sides
    # CEL weights on path (a) (its main output and its four side outputs), not on path (b)
    assert res["cel_weighted"] == [False] + [True] * 5 + [False] * 4
    # training without labels: the CA path with its side outputs, nothing weighted
    res = model(image, dsm)
    assert len(res["aux_logits"]) == 4 and not any(res["cel_weighted"])


def test_clear_errors():
    model = _tiny().eval()
    image, dsm, _ = _inputs(1)
    with pytest.raises(ValueError, match="aux"):
        model(image)
    with pytest.raises(ValueError, match="aux band"):
        model(image, torch.cat([dsm, dsm], 1))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(image[..., :48], dsm[..., :48])


# ---- labels drive training fusion; inference is label-free -------------------------------------

def test_labels_drive_cff_path_only():
    model = _tiny().train()
    image, dsm, t1 = _inputs(2)
    t2 = torch.roll(t1, shifts=(17, 5), dims=(1, 2))
    with torch.no_grad():
        a = model(image, dsm, targets=t1)
        b = model(image, dsm, targets=t2)
        c = model(image, dsm, targets=t1)
    assert not torch.allclose(a["aux_logits"][0], b["aux_logits"][0])    # path (a) follows labels
    for x, y in zip(a["aux_logits"][1:5], b["aux_logits"][1:5]):
        assert not torch.allclose(x, y)
    assert torch.equal(a["logits"], b["logits"])                          # path (b) does not
    for x, y in zip(a["aux_logits"][5:], b["aux_logits"][5:]):
        assert torch.equal(x, y)
    assert torch.equal(a["aux_logits"][0], c["aux_logits"][0])            # deterministic


def test_inference_is_deterministic_and_ignores_labels():
    model = _tiny().eval()
    image, dsm, target = _inputs(2)
    with torch.no_grad():
        first, second = model(image, dsm), model(image, dsm)
        with_labels = model(image, dsm, targets=target)
    assert torch.equal(first, second)
    assert torch.equal(first, with_labels)                  # labels are never used at inference


def test_inference_path_is_training_path_b():
    model = _tiny().train()
    image, dsm, target = _inputs(2)
    with torch.no_grad():
        model(image, dsm, targets=target)                   # move BN statistics off their init
    _freeze_bn(model)                                       # train mode, BN on running statistics
    with torch.no_grad():
        res = model(image, dsm, targets=target)
        model.eval()
        inference = model(image, dsm)
    assert torch.allclose(res["logits"], inference, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(res["aux_logits"][0], inference, atol=1e-3)


def test_decoder_running_statistics_come_from_the_inference_path():
    image, dsm, target = _inputs(2)
    stats = []
    for kwargs in ({"targets": target}, {"targets": torch.roll(target, 9, 1)}, {}):
        model = _tiny().train()
        with torch.no_grad():
            model(image, dsm, **kwargs)
        stats.append([b.clone() for n, b in model.decoder.named_buffers() if "running" in n])
    for x, y, z in zip(*stats):
        assert torch.allclose(x, y) and torch.allclose(x, z)
    # with bn_stats="both" path (a) moves them too
    model = _tiny(bn_stats="both").train()
    with torch.no_grad():
        model(image, dsm, targets=target)
    both = [b for n, b in model.decoder.named_buffers() if "running" in n]
    assert any(not torch.allclose(x, y) for x, y in zip(both, stats[0]))


# ---- masks, CEL weights, loss --------------------------------------------------------------------

def test_level_masks_nearest_and_area():
    model = _tiny()
    t = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, IGNORE, IGNORE], [2, 2, IGNORE, IGNORE]]])
    m = model.level_masks(t, (2, 2))
    assert m.shape == (1, 4, 2, 2)
    assert torch.equal(m[0].argmax(0), torch.tensor([[0, 1], [2, 0]]))
    assert m[0, :, 1, 1].sum() == 0 and torch.equal(m[0].sum(0), torch.tensor([[1., 1.], [1., 0.]]))
    model.mask_resize = "area"
    t2 = torch.tensor([[[0, 1], [1, IGNORE]]])
    soft = model.level_masks(t2, (1, 1))[0, :, 0, 0]
    assert torch.allclose(soft, torch.tensor([0.25, 0.5, 0.0, 0.0]))


def test_enhancement_weights_formula_on_hand_made_labels():
    # 12 pixels of class 0, 4 of class 1: p = 3/4, 1/4; 1/p = 4/3, 4; w = (1/p)/Σ(1/p)·K
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    t[0, :, 3] = 1
    w = enhancement_weights(t, 4)
    assert torch.allclose(w[t == 0], torch.tensor(0.5))
    assert torch.allclose(w[t == 1], torch.tensor(1.5))
    model = _tiny()
    assert torch.allclose(model.category_weights(t), torch.tensor([[0.5, 1.5, 0.0, 0.0]]))
    # clipping to [0.2, 5]: five classes of 199 pixels and a rare one of 5 (K = 6)
    t = torch.cat([torch.full((199,), c) for c in range(5)] + [torch.full((5,), 5)]).view(1, 20, 50)
    t2 = t.clone()
    t2[0, 0, :3] = IGNORE                                   # ignored pixels do not count
    m6 = _tiny(classes=6)
    p = torch.tensor([199.] * 5 + [5.]) / 1000
    raw = (1 / p) / (1 / p).sum() * 6
    assert raw[0] < 0.2 and raw[5] > 5
    assert torch.allclose(m6.category_weights(t), raw.clamp(0.2, 5.0)[None])
    assert torch.allclose(m6.category_weights(t), torch.tensor([[0.2] * 5 + [5.0]]))
    assert (enhancement_weights(t2, 6)[t2 == IGNORE] == 0).all()


def test_cafe_loss_is_multiscale_ce_with_cel_weights_where_flagged():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (2, 32, 32), generator=g)
    target[0, :4] = IGNORE
    main = torch.randn(2, 4, 32, 32, generator=g)
    a_main = torch.randn(2, 4, 32, 32, generator=g)
    side = torch.randn(2, 4, 8, 8, generator=g)
    out = {"logits": main, "aux_logits": [a_main, side], "cel_weighted": [False, True, True]}
    small = F.interpolate(target[:, None].float(), size=(8, 8), mode="nearest")[:, 0].long()
    expected = (cross_entropy(main, target)
                + cross_entropy(a_main, target, weight=enhancement_weights(target, 4))
                + cross_entropy(side, small, weight=enhancement_weights(small, 4)))
    assert torch.allclose(cafe.cafe_loss(out, target), expected)
    # all terms weight 1 (paths 1:1); the weighting really changes the value
    plain = cross_entropy(main, target) + cross_entropy(a_main, target) + cross_entropy(side, small)
    assert not torch.allclose(cafe.cafe_loss(out, target), plain)
    out["cel_weighted"] = [False] * 3
    assert torch.allclose(cafe.cafe_loss(out, target), plain)
    # a plain tensor (validation output) gets plain CE
    assert torch.allclose(cafe.cafe_loss(main, target), cross_entropy(main, target))


def test_real_output_works_with_cafe_loss_and_generic_loss():
    model = _tiny().train()
    image, dsm, target = _inputs(2)
    res = model(image, dsm, targets=target)
    loss = cafe.cafe_loss(res, target)
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(build_loss("enhanced_ce", aux_weight=1.0)(res, target))


# ---- reading switches --------------------------------------------------------------------------

def test_cel_feature_mode_scales_cff_features_by_category_weight():
    model = _tiny(cel_mode="feature").train()
    image, dsm, target = _inputs(2)
    target[1, :8] = IGNORE
    with torch.no_grad():
        pairs, _ = model.encode(image, dsm)
        scaled = model.cff_features(pairs, target)
        model.cel_mode = "none"
        plain = model.cff_features(pairs, target)
    w = model.category_weights(target)
    for (r, _), f, f0 in zip(pairs, scaled, plain):
        masks = model.level_masks(target, r.shape[-2:])
        scale = (masks * w[:, :, None, None]).sum(1) + (1 - masks.sum(1))
        assert torch.allclose(f, f0 * scale[:, None], atol=1e-6)
    model.cel_mode = "feature"
    res = model(image, dsm, targets=target)
    assert not any(res["cel_weighted"])                     # no loss weighting in feature mode


def test_modal_cff_and_single_path_reading():
    model = _tiny(cff_mode="modal").train()
    image, dsm, target = _inputs(2)
    with torch.no_grad():
        for level in model.cff:
            level.alpha.uniform_(0.5, 1.5)
            level.beta.uniform_(0.5, 1.5)
        a = model(image, dsm, targets=target)["aux_logits"][0]
        b = model(image, dsm, targets=torch.roll(target, 11, 2))["aux_logits"][0]
    assert not torch.allclose(a, b)
    single = _tiny(two_path=False, feed="ca").train()
    res = single(image, dsm, targets=target)
    assert res["logits"].shape == (2, 4, 64, 64) and len(res["aux_logits"]) == 4
    assert all(res["cel_weighted"])
    single.eval()
    with torch.no_grad():
        assert single(image, dsm).shape == (2, 4, 64, 64)


# ---- learning ----------------------------------------------------------------------------------

def _height_scene(n: int = 2, size: int = 64, seed: int = 0):
    """Roads (1) and buildings (2) share one colour; only the DSM (buildings high) tells them apart.
    Trees (3) are green and medium high; background (0) grey and low."""
    g = torch.Generator().manual_seed(seed)
    image = 0.1 * torch.randn(n, 3, size, size, generator=g)
    dsm = 0.1 * torch.randn(n, 1, size, size, generator=g) - 1.0
    target = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in (1, 2, 3, 1, 2, 3):
            y, x = torch.randint(0, size - 20, (2,), generator=g).tolist()
            hh, ww = torch.randint(10, 20, (2,), generator=g).tolist()
            target[i, y:y + hh, x:x + ww] = c
    flat = (target == 1) | (target == 2)
    image[:, 0][flat] += 1.5
    image[:, 1][flat] += 1.5
    image[:, 1][target == 3] += 1.5
    dsm[:, 0][target == 2] += 2.5
    dsm[:, 0][target == 3] += 1.5
    return image, dsm, target


@pytest.fixture(scope="module")
def overfitted():
    torch.set_num_threads(1)
    model = _tiny()
    model.train()
    image, dsm, target = _height_scene()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = cafe.cafe_loss(model(image, dsm, targets=target), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return model, (image, dsm, target), losses


def test_overfits_one_batch(overfitted):
    model, (image, dsm, target), losses = overfitted
    assert min(losses[-5:]) < 0.3 * losses[0], losses[::10]
    with torch.no_grad():
        pred = model(image, dsm).argmax(1)                  # the label-free inference path
    assert (pred == target).float().mean() > 0.9


def test_dsm_stream_matters(overfitted):
    model, (image, dsm, target), _ = overfitted
    same_colour = (target == 1) | (target == 2)
    bands = image.permute(1, 0, 2, 3)
    road, building = bands[:, target == 1], bands[:, target == 2]
    assert torch.allclose(road.mean(1), building.mean(1), atol=0.05)      # same colour in the image
    with torch.no_grad():
        pred = model(image, dsm).argmax(1)
        flat = model(image, torch.zeros_like(dsm)).argmax(1)
    acc = (pred == target)[same_colour].float().mean()
    acc_no_dsm = (flat == target)[same_colour].float().mean()
    assert acc > 0.85
    # without heights, roads and buildings (identical colour) can no longer be told apart
    assert acc_no_dsm < 0.6 and acc - acc_no_dsm > 0.3, (acc, acc_no_dsm)


def test_gradient_reaches_every_parameter():
    for extra in ({}, {"cff_mode": "modal", "cel_mode": "feature"}):
        model = _tiny(**extra).train()
        image, dsm, target = _inputs(2)
        cafe.cafe_loss(model(image, dsm, targets=target), target).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, missing
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        # the training-only CFF and the inference CA both learn (non-zero gradients)
        assert all(p.grad.abs().sum() > 0 for p in model.cff.parameters())
        assert all(p.grad.abs().sum() > 0 for p in model.ca.parameters())
        assert model.dsm.conv1.weight.grad.abs().sum() > 0


# ---- weights, size, recipe --------------------------------------------------------------------

def test_full_parameter_count():
    model = cafe.build_cafe(3, 6, 1)
    n = sum(p.numel() for p in model.parameters())
    assert n == cafe.FULL_PARAMS
    extra = sum(p.numel() for p in [*model.ca.parameters(), *model.cff.parameters()])
    assert extra == 25 + 6 * 25                             # CA kernels 3,5,5,5,7; CFF per category
    assert abs((n - extra) - cafe.SPEC_PARAMS) / cafe.SPEC_PARAMS < 1e-3   # RedNet-R50×2: 81.95 M
    assert model.rgb.channels == [64, 256, 512, 1024, 2048]


def test_depth_options():
    for depth, chans in ((18, [16, 16, 32, 64, 128]), (34, [16, 16, 32, 64, 128]),
                         (50, [16, 64, 128, 256, 512])):
        model = cafe.build_cafe(3, 4, depth=depth, width=16, decoder_blocks=(1, 1, 1, 1))
        assert model.rgb.channels == chans
    model = cafe.build_cafe(3, 4, layers=(1, 1, 1, 1), block="bottleneck", width=8,
                            decoder_blocks=[1, 1, 1, 1], final_blocks=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32), torch.randn(1, 1, 32, 32)).shape == (1, 4, 32, 32)


def test_recipe_values():
    r = cafe.RECIPE
    assert r["optimizer"] == "sgd" and r["momentum"] == 0.9
    assert r["lr"] == 7e-4 and r["weight_decay"] == 1e-4
    assert r["batch_size"] == 8 and r["epochs"] == 150 and r["tile"] == 512
    assert r["lr_step_epochs"] == 100 and r["lr_step_gamma"] == 0.8
    assert r["loss"] == "cafe" and r["aux_weight"] == 1.0
    assert recipe_of("cafe") == r       # the loop finds it beside the registered builder
