"""Architectures: exact parameter counts, shapes, Shake-Shake's stochastic mixing, float64 references, bf16 steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfdistill import models
from selfdistill.models import (
    ARCHITECTURES,
    PreActBlock,
    ShakeBlock,
    ShakeMix,
    build_model,
    count_parameters,
    shake_shake,
)

CIFAR = (3, 32, 32)
NEW_ARCHS = ("shake_shake_26_2x32d", "preact_resnet18", "fast_cnn")


# --------------------------------------------------------------------------------------------------- counts, shapes


@pytest.mark.parametrize(
    ("arch", "width", "expected"),
    [
        # docs/science.md, "Published numbers": Shake-Shake-26 2x32d has ~2.9M parameters (Gastaldi 2017: 2.9M; 16-channel stem + BN and a
        # 16→32 skip at the first block give exactly this; a 32-channel stem would give 2,932,266).
        ("shake_shake_26_2x32d", None, 2_923_162),
        # the paper's 2x64d: 11.7M
        ("shake_shake_26_2x32d", 64, 11_653_978),
        # the original repository's layout: the same minus the three skips' BNs (2·(32 + 64 + 128) = 448)
        ("shake_shake_26_2x32d_original", None, 2_922_714),
        # pre-activation ResNet-18: 11.17M (kuangliu/DivideMix's 11,171,146 + the final BN's 2·512)
        ("preact_resnet18", None, 11_172_170),
        # airbench94: 1.97M trainable (its BN scales are frozen; the 2×2 stem is trainable here)
        ("fast_cnn", None, 1_971_640),
    ],
)
def test_parameter_counts(arch, width, expected):
    assert count_parameters(build_model(arch, CIFAR, 10, width)) == expected


def test_fast_cnn_frozen_bn_scales_and_settings():
    net = build_model("fast_cnn", CIFAR, 10)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6
    assert all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
    assert all(bn.momentum == 0.4 and bn.eps == 1e-12 for bn in bns)
    # 1,152 frozen BN scales: 2·64 + 2·256 + 2·256
    assert sum(p.numel() for p in net.parameters()) == 1_971_640 + 1_152
    # the head is a bias-free linear scaled by 1/9
    net.eval()
    x = torch.randn(2, *CIFAR)
    features = net.pool(net.groups(net.stem(x)))
    torch.testing.assert_close(net(x), net.linear(features) / 9)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("size", [32, 16])
def test_output_shapes(arch, size):
    net = build_model(arch, (3, size, size), 7).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_width_overrides_base_width():
    assert build_model("shake_shake_26_2x32d", CIFAR, 10, 8).head[-1].in_features == 32
    assert build_model("preact_resnet18", CIFAR, 10, 16).head[-1].in_features == 128
    assert build_model("fast_cnn", CIFAR, 10, 16).linear.in_features == 64
    assert {a: models.DEFAULT_WIDTH[a] for a in NEW_ARCHS} == {
        "shake_shake_26_2x32d": 32,
        "preact_resnet18": 64,
        "fast_cnn": 64,
    }


def test_unknown_arch_names_every_allowed_arch():
    with pytest.raises(ValueError) as err:
        build_model("resnet", CIFAR, 10)
    assert str(err.value) == (
        "unknown architecture 'resnet'; allowed: mlp, small_cnn, shake_shake_26_2x32d, "
        "shake_shake_26_2x32d_original, preact_resnet18, fast_cnn, mnist1d_mlp, mnist1d_cnn"
    )


def test_fast_cnn_rejects_inputs_too_small_to_pool():
    build_model("fast_cnn", (1, 9, 9), 10)(torch.randn(2, 1, 9, 9))
    with pytest.raises(ValueError, match="at least 9×9 pixels, got 8×8"):
        build_model("fast_cnn", (1, 8, 8), 10)


def test_resnet_inits():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d", CIFAR, 10)
    # 128→128 3×3: He-normal, fan-out 9·128
    conv = net.stages[2][1].branch1[4]
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 128)) ** 0.5, rel=0.02)
    for n in (net, build_model("preact_resnet18", CIFAR, 10)):
        bns = [m for m in n.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in bns)
        assert (n.head[-1].bias == 0).all()


# ------------------------------------------------------------------------------------------------------ shake-shake


def test_shake_mix_forward_alpha_backward_beta():
    gen = torch.Generator().manual_seed(1)
    a, b, g = (torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    alpha, beta = (torch.rand(5, 1, 1, 1, generator=gen, dtype=torch.float64) for _ in range(2))
    a.requires_grad_(True)
    b.requires_grad_(True)
    out = ShakeMix.apply(a, b, alpha, beta)
    # per sample, by hand
    for i in range(5):
        torch.testing.assert_close(out[i], alpha[i, 0, 0, 0] * a[i] + (1 - alpha[i, 0, 0, 0]) * b[i])
    out.backward(g)
    torch.testing.assert_close(a.grad, beta * g)
    torch.testing.assert_close(b.grad, (1 - beta) * g)


def test_shake_shake_draws_independent_per_sample_alpha_and_beta():
    n = 64
    a = torch.ones(n, 2, 3, 3, requires_grad=True)
    b = torch.zeros(n, 2, 3, 3, requires_grad=True)
    torch.manual_seed(123)
    out = shake_shake(a, b, training=True)
    out.backward(torch.ones_like(out))
    # forward coefficient α and backward coefficient β, per sample
    alpha, beta = out[:, 0, 0, 0].detach(), a.grad[:, 0, 0, 0]
    assert torch.equal(out.detach(), alpha.view(n, 1, 1, 1).expand_as(out))
    torch.testing.assert_close(b.grad, (1 - beta).view(n, 1, 1, 1).expand_as(b))
    # same draws as an independent generator seeded alike: α first, then β, one per sample
    torch.manual_seed(123)
    torch.testing.assert_close(alpha, torch.rand(n))
    torch.testing.assert_close(beta, torch.rand(n))
    # per sample, not per batch
    assert alpha.std() > 0.15 and beta.std() > 0.15
    # independent: the backward coefficient is not the forward one
    assert (alpha - beta).abs().min() > 0
    # evaluation: the fixed 0.5/0.5 average
    torch.testing.assert_close(shake_shake(a, b, training=False), torch.full_like(a, 0.5))


def test_shake_shake_draws_on_input_dtype():
    a = torch.randn(3, 2, 2, 2, dtype=torch.bfloat16)
    assert shake_shake(a, a.clone(), training=True).dtype == torch.bfloat16
    assert models.uniform_per_sample(a).shape == (3, 1, 1, 1)


@pytest.mark.parametrize(("cin", "cout", "stride"), [(4, 4, 1), (4, 8, 2), (6, 4, 1)])
def test_shake_block_gradient_uses_beta_not_alpha(monkeypatch, cin, cout, stride):
    """Block in train mode with forced draws: the output is shortcut + α·a + (1−α)·b, and every gradient
    (input and parameters) equals that of shortcut + β·a + (1−β)·b computed with plain autograd."""
    torch.manual_seed(0)
    block = ShakeBlock(cin, cout, stride).double().train()
    x = torch.randn(3, cin, 6, 6, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64).view(3, 1, 1, 1)
    beta = torch.tensor([0.9, 0.3, 0.2], dtype=torch.float64).view(3, 1, 1, 1)
    draws = iter([alpha, beta])
    monkeypatch.setattr(models, "uniform_per_sample", lambda like: next(draws))
    out = block(x)
    g = torch.randn_like(out)
    params = [x, *block.parameters()]
    grads = torch.autograd.grad(out, params, g)

    def combo(coef):
        a, b = block.branch1(x), block.branch2(x)
        return block.shortcut(x) + coef * a + (1 - coef) * b

    torch.testing.assert_close(out, combo(alpha))
    expected = torch.autograd.grad(combo(beta), params, g)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def _randomise_bn(net: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))


def _bn_eval(x, bn):
    shape = (1, -1, 1, 1)
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _bn_batch(x, bn):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    shape = (1, -1, 1, 1)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _conv(x, conv):
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)


def _shake_reference(net, x, original=False):
    """Shake-Shake-26 in evaluation mode, written out op by op (no module forward is called). ``original``: the
    original repository's layout (ReLU after the stem BN, skip without ReLU before and BN after, no final ReLU)."""
    h = _bn_eval(_conv(x, net.stem[0]), net.stem[1])
    h = torch.relu(h) if original else h
    for stage in net.stages:
        for block in stage:
            branches = []
            for br in (block.branch1, block.branch2):
                y = _bn_eval(_conv(torch.relu(h), br[1]), br[2])
                branches.append(_bn_eval(_conv(torch.relu(y), br[4]), br[5]))
            if isinstance(block.shortcut, nn.Identity):
                skip = h
            else:
                sc, r = block.shortcut, (h if original else torch.relu(h))
                s = sc.stride
                shifted = torch.zeros_like(r)
                # pixel (i, j) takes (i+1, j+1)
                shifted[:, :, :-1, :-1] = r[:, :, 1:, 1:]
                y1 = torch.einsum("oc,nchw->nohw", sc.conv1.weight[:, :, 0, 0], r[:, :, ::s, ::s])
                y2 = torch.einsum("oc,nchw->nohw", sc.conv2.weight[:, :, 0, 0], shifted[:, :, ::s, ::s])
                skip = torch.cat([y1, y2], dim=1)
                skip = skip if original else _bn_eval(skip, sc.bn)
            h = skip + 0.5 * branches[0] + 0.5 * branches[1]
    pooled = (h if original else torch.relu(h)).mean(dim=(2, 3))
    lin = net.head[-1]
    return pooled @ lin.weight.T + lin.bias


def test_shake_eval_is_deterministic_and_matches_float64_reference():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d", (3, 8, 8), 5, width=4).double().eval()
    _randomise_bn(net)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = net(x)
        torch.testing.assert_close(net(x), out, rtol=0, atol=0)
        torch.testing.assert_close(out, _shake_reference(net, x), rtol=1e-10, atol=1e-10)


def test_shake_train_forward_is_stochastic_per_sample():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d", (3, 8, 8), 5, width=4).train()
    # four copies of one image
    x = torch.randn(1, 3, 8, 8).expand(4, 3, 8, 8).contiguous()
    with torch.no_grad():
        first, second = net(x), net(x)
        assert not torch.allclose(first, second)
        # identical inputs, different outputs: the mixing weights are drawn per sample
        assert (first[1:] - first[0]).abs().amax() > 1e-4
        net.eval()
        evaluated = net(x)
        torch.testing.assert_close(evaluated, evaluated[:1].expand_as(evaluated))


# ---------------------------------------------------------------------------------------------------------- preact


@pytest.mark.parametrize(("cin", "cout", "stride"), [(4, 8, 2), (6, 6, 1)])
@pytest.mark.parametrize("training", [False, True])
def test_preact_block_matches_float64_reference(cin, cout, stride, training):
    torch.manual_seed(0)
    block = PreActBlock(cin, cout, stride).double().train(training)
    _randomise_bn(block)
    x = torch.randn(4, cin, 6, 6, dtype=torch.float64)
    bn = _bn_batch if training else _bn_eval
    pre = torch.relu(bn(x, block.bn1))
    if stride == 1 and cin == cout:
        assert block.shortcut is None
        skip = x
    else:
        skip = torch.einsum(
            "oc,nchw->nohw",
            block.shortcut.weight[:, :, 0, 0],
            pre[:, :, ::stride, ::stride],
        )
    h = F.conv2d(pre, block.conv1.weight, stride=stride, padding=1)
    want = F.conv2d(torch.relu(bn(h, block.bn2)), block.conv2.weight, padding=1) + skip
    with torch.no_grad():
        torch.testing.assert_close(block(x), want, rtol=1e-10, atol=1e-10)


def test_preact_resnet18_layout():
    net = build_model("preact_resnet18", CIFAR, 10)
    assert [len(stage) for stage in net.stages] == [2, 2, 2, 2]
    assert [stage[0].conv1.out_channels for stage in net.stages] == [64, 128, 256, 512]
    assert [stage[0].conv1.stride[0] for stage in net.stages] == [1, 2, 2, 2]
    assert net.stem.out_channels == 64 and isinstance(net.head[0], nn.BatchNorm2d)


# ----------------------------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_train_step_bf16_autocast_channels_last(arch):
    torch.manual_seed(0)
    net = build_model(arch, CIFAR, 10).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, *CIFAR).to(memory_format=torch.channels_last)
    y = torch.tensor([3, 7])
    before = [p.detach().clone() for p in net.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 10)
    loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    changed = [not torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True)]
    assert sum(changed) == len(trainable)


# ------------------------------------------------------------------------------------- the original's shake-shake


def _original_count_by_hand(c_in: int = 3, classes: int = 10, w: int = 32, stem: int = 16) -> int:
    """Parameters of the original repository's Shake-Shake-26 2×32d, from its layer shapes alone."""

    def conv(cin, cout, k):
        # bias-free
        return cin * cout * k * k

    def bn(c):
        # weight and bias
        return 2 * c

    def branch(cin, cout):
        return conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)

    total = conv(c_in, stem, 3) + bn(stem)
    cin = stem
    for cout in (w, 2 * w, 4 * w):
        for i in range(4):
            total += 2 * branch(cin, cout)
            # the skip: two 1×1 convs to cout/2 each, no BN
            if i == 0:
                total += 2 * conv(cin, cout // 2, 1)
            cin = cout
    # linear with bias
    return total + cin * classes + classes


def test_original_shake_shake_parameter_count_by_hand():
    # stem 432 + 32; stage 1: 28,416 + 3 · 37,120; stage 2: 113,152 + 3 · 147,968; stage 3: 451,584 + 3 · 590,848;
    # linear 1,290 → 464 + 139,776 + 557,056 + 2,224,128 + 1,290
    assert 464 + 139_776 + 557_056 + 2_224_128 + 1_290 == 2_922_714
    assert _original_count_by_hand() == 2_922_714
    assert count_parameters(build_model("shake_shake_26_2x32d_original", CIFAR, 10)) == _original_count_by_hand()
    gastaldi = count_parameters(build_model("shake_shake_26_2x32d", CIFAR, 10))
    # Gastaldi's BN after each skip concat
    assert gastaldi - _original_count_by_hand() == 2 * (32 + 64 + 128)


def test_original_shake_shake_layout_and_init():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d_original", CIFAR, 10)
    assert isinstance(net.stem[2], nn.ReLU)
    skips = [m for m in net.modules() if isinstance(m, models.OriginalShakeSkip)]
    assert len(skips) == 3 and not any(isinstance(m, nn.BatchNorm2d) for s in skips for m in s.modules())
    # no ReLU between the last block and the pooling
    assert [type(m) for m in net.head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    # 128→128 3×3: He-normal, fan-out 9·128
    conv = net.stages[2][1].branch1[4]
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 128)) ** 0.5, rel=0.02)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((bn.weight == 1).all() and (bn.bias == 0).all() for bn in bns)
    # PyTorch's default init: U(±1/√fan_in) for weight and bias, bias not zeroed
    lin = net.head[-1]
    bound = 1 / 128**0.5
    assert (lin.bias != 0).all() and lin.bias.abs().max() <= bound and lin.weight.abs().max() <= bound
    assert lin.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)


def test_original_shake_eval_matches_float64_reference():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d_original", (3, 8, 8), 5, width=4).double().eval()
    _randomise_bn(net)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _shake_reference(net, x, original=True), rtol=1e-10, atol=1e-10)


def test_original_shake_train_mixes_per_sample():
    torch.manual_seed(0)
    net = build_model("shake_shake_26_2x32d_original", (3, 8, 8), 5, width=4).train()
    x = torch.randn(1, 3, 8, 8).expand(4, 3, 8, 8).contiguous()
    with torch.no_grad():
        first = net(x)
        assert (first[1:] - first[0]).abs().amax() > 1e-4
        net.eval()
        evaluated = net(x)
        torch.testing.assert_close(evaluated, evaluated[:1].expand_as(evaluated))
