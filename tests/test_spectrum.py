"""The frequency spectrum (selfdistill.spectrum, selfdistill.spectrum_stats) against slow float64 loop references."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from selfdistill.models import build_model, penultimate_features
from selfdistill.spectrum import (
    band_relative_errors,
    band_slices,
    convergence_epoch,
    energy_shares,
    gaussian_kernel,
    lowpass_ratio,
    one_hot,
    resolve_spectrum_delta,
    self_weight,
    spectral_basis,
    spectrum_tables,
)
from selfdistill.spectrum_stats import convergence_table, order_summary, order_verdict


def loop_kernel(x, delta):
    n = len(x)
    g = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            d2 = sum((float(x[i][k]) - float(x[j][k])) ** 2 for k in range(len(x[i])))
            g[i][j] = math.exp(-d2 / (2 * delta))
    return g


def loop_normalised(g):
    n = len(g)
    d = [sum(row) for row in g]
    return [[g[i][j] / math.sqrt(d[i] * d[j]) for j in range(n)] for i in range(n)]


def loop_projection_norm_sq(u, bands, f):
    """||P_b f||_F^2 per band with P_b = sum_k u_k u_k^T built entry by entry."""
    n, c = len(f), len(f[0])
    out = []
    for sl in bands:
        total = 0.0
        for col in range(c):
            for i in range(n):
                pf = 0.0
                for j in range(n):
                    pij = sum(u[i][k] * u[j][k] for k in range(sl.start, sl.stop))
                    pf += pij * f[j][col]
                total += pf * pf
        out.append(total)
    return out


@pytest.fixture
def tiny():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    outputs = rng.dirichlet(np.ones(3), size=(4, 9))
    y_noisy = rng.integers(0, 3, 9)
    y_clean = y_noisy.copy()
    y_clean[:3] = (y_clean[:3] + 1) % 3
    return x, outputs, y_noisy, y_clean


def test_kernel_and_basis_match_loops(tiny):
    x, *_ = tiny
    g_loop = loop_kernel(x.tolist(), 1.7)
    g = gaussian_kernel(x, 1.7)
    np.testing.assert_allclose(g, np.array(g_loop), rtol=1e-12, atol=1e-14)
    s_loop = np.array(loop_normalised(g_loop))
    vals, u = spectral_basis(g)
    assert np.all(np.diff(vals) <= 1e-12), "eigenvalues must be descending"
    np.testing.assert_allclose(u @ np.diag(vals) @ u.T, s_loop, atol=1e-12)
    np.testing.assert_allclose(u.T @ u, np.eye(len(x)), atol=1e-12)
    # the largest eigenvalue of D^-1/2 G D^-1/2 is 1, with eigenvector D^1/2 1 (the lowest frequency)
    assert vals[0] == pytest.approx(1.0, abs=1e-12)
    top = np.sqrt(np.array([sum(r) for r in g_loop]))
    assert abs(u[:, 0] @ top / np.linalg.norm(top)) == pytest.approx(1.0, abs=1e-10)


def test_band_slices_equal_counts():
    assert [(s.start, s.stop) for s in band_slices(10, 3)] == [(0, 4), (4, 7), (7, 10)]
    assert [s.stop - s.start for s in band_slices(1000, 8)] == [125] * 8
    with pytest.raises(ValueError, match="bands"):
        band_slices(3, 4)


def test_band_errors_and_energy_shares_match_loops(tiny):
    x, outputs, y_noisy, y_clean = tiny
    _, u = spectral_basis(gaussian_kernel(x, 1.7))
    bands = band_slices(9, 3)
    ul = u.tolist()
    y = one_hot(y_noisy, 3)
    err = band_relative_errors(u, outputs, y, bands)
    for e in range(outputs.shape[0]):
        num = loop_projection_norm_sq(ul, bands, (outputs[e] - y).tolist())
        den = loop_projection_norm_sq(ul, bands, y.tolist())
        np.testing.assert_allclose(err[e], [math.sqrt(a) / math.sqrt(b) for a, b in zip(num, den)], rtol=1e-10)
    noise = one_hot(y_noisy, 3) - one_hot(y_clean, 3)
    ref = loop_projection_norm_sq(ul, bands, noise.tolist())
    np.testing.assert_allclose(energy_shares(u, noise, bands), [r / sum(ref) for r in ref], rtol=1e-10)
    assert energy_shares(u, one_hot(y_clean, 3), bands).sum() == pytest.approx(1.0)


def test_self_weight_and_ratio_match_loops(tiny):
    x, *_ = tiny
    g = loop_kernel(x.tolist(), 0.9)
    expected = sum(g[i][i] / sum(g[i]) for i in range(len(g))) / len(g)
    assert self_weight(np.array(g)) == pytest.approx(expected, rel=1e-12)
    # a tiny width: every point is its own only neighbour
    assert self_weight(gaussian_kernel(x, 1e-6)) == pytest.approx(1.0)
    f = one_hot(np.arange(9) % 3, 3)
    k = [[g[i][j] / sum(g[i]) for j in range(9)] for i in range(9)]
    low = [[sum(k[i][j] * f[j][c] for j in range(9)) for c in range(3)] for i in range(9)]
    lo = sum(v * v for row in low for v in row)
    hi = sum((f[i][c] - low[i][c]) ** 2 for i in range(9) for c in range(3))
    assert lowpass_ratio(np.array(g), f) == pytest.approx(lo / (lo + hi), rel=1e-12)


def loop_convergence(err, epochs, q):
    drop = err[0] - min(err)
    if not drop > 0:
        return math.nan
    for t in range(len(err)):
        if err[0] - err[t] >= q * drop:
            return float(epochs[t])
    return math.nan


@pytest.mark.parametrize(
    "err",
    [[1.0, 0.8, 0.5, 0.45, 0.6], [1.0, 1.0, 1.0], [0.5, 0.7, 0.9], [2.0, 0.1, 0.2, 0.05], [1.0, 0.9, 0.55, 0.5]],
)
@pytest.mark.parametrize("q", [0.5, 0.9])
def test_convergence_epoch_matches_loop(err, q):
    epochs = [1, 3, 5, 7, 9][: len(err)]
    got, want = convergence_epoch(err, epochs, q), loop_convergence(err, epochs, q)
    assert (math.isnan(got) and math.isnan(want)) or got == want
    assert math.isnan(convergence_epoch([1.0, float("nan")], [1, 2], q))


def test_order_verdict_words():
    assert order_verdict([0.8, 0.9, 0.85])[1] == "low frequencies converge first (95% interval above 0)"
    assert order_verdict([-0.8, -0.9, -0.85])[1].startswith("high frequencies converge first")
    assert order_verdict([0.5, -0.6, 0.1])[1] == "no order detected (95% interval includes 0)"
    assert order_verdict([0.5])[1] == "not testable (1 seed)"
    assert order_verdict([float("nan")] * 3)[1].startswith("cannot compute")
    assert order_verdict([0.5, float("nan"), float("nan")])[1] == (
        "not testable (1 seed); 2 of 3 seeds left out, ρ undefined (fewer than 3 bands whose error fell, or every band "
        "at the same epoch)"
    )


def test_convergence_table_and_summary():
    rows = []
    for seed in range(3):
        for mode in ("ce", "self_distill"):
            for band in (1, 2, 3):
                for epoch in range(1, 7):
                    # band b falls from 1 to 0 and reaches its floor at epoch 1 + b (+ the seed's jitter)
                    err = max(0.0, 1.0 - (epoch - 1) / (band + seed * 0.3))
                    rows.append((seed, mode, "input", band, epoch, "noisy", err))
    spectrum = pd.DataFrame(rows, columns=["seed", "mode", "space", "band", "epoch", "target", "rel_error"])
    conv = convergence_table(spectrum)
    first = conv[(conv["seed"] == 0) & (conv["mode"] == "ce") & (conv["q"] == 0.9)]
    assert first["epoch"].tolist() == [2.0, 3.0, 4.0]
    assert first["rho"].iloc[0] == pytest.approx(1.0)
    summary = order_summary(conv)
    ce = summary[(summary["mode"] == "ce") & (summary["q"] == 0.9)].iloc[0]
    assert ce["n_seeds"] == 3 and ce["mean"] > 0
    assert ce["verdict"] in ("low frequencies converge first (95% interval above 0)", order_verdict([1.0] * 3)[1])
    assert order_verdict([1.0] * 3)[1] == "all 3 seeds give exactly ρ = +1: no interval"
    diff = summary[summary["comparison"] == "rho - ce"]
    assert set(diff["mode"]) == {"self_distill"}


def test_spectrum_tables_shape_and_delta(tiny):
    x, outputs, y_noisy, y_clean = tiny
    spectrum, energy = spectrum_tables(x, outputs, np.array([1, 2, 5, 9]), y_noisy, y_clean, 1.7, 3)
    assert len(spectrum) == 2 * 4 * 3 and set(spectrum["target"]) == {"noisy", "clean"}
    assert energy["clean_share"].sum() == pytest.approx(1.0) and energy["noise_share"].sum() == pytest.approx(1.0)
    assert resolve_spectrum_delta([0.5, 0.05, 0.1, 0.2, 0.07], None) == 0.1
    assert resolve_spectrum_delta([0.05, 0.1], 0.3) == 0.3


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])
def test_penultimate_features_are_the_classifier_input(arch):
    torch.manual_seed(0)
    net = build_model(arch, (1, 8, 8), 4, width=8).eval()
    x = torch.randn(5, 1, 8, 8)
    feats = penultimate_features(net, x, batch_size=2)
    classifier = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        np.testing.assert_allclose(classifier(feats).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)
    if arch == "mlp":
        with torch.no_grad():
            np.testing.assert_allclose(feats.numpy(), net.net[:-1](x).numpy(), rtol=1e-6)


def test_model_features_load_the_weights_file(tmp_path):
    """The features of a weights file written as rule train writes it (the payload's model and state_dict), from
    flattened (H, W, C) normalised inputs."""
    from selfdistill.spectrum import model_features

    torch.manual_seed(1)
    net = build_model("small_cnn", (2, 6, 6), 3, width=4)
    path = tmp_path / "model_early_stopped.pt"
    torch.save({"state_dict": net.state_dict(), "model": {"arch": "small_cnn", "width": 4}}, path)
    x_hwc = np.random.default_rng(0).normal(size=(5, 6, 6, 2))
    got = model_features(path, x_hwc.reshape(5, -1), (6, 6, 2), 3)
    want = penultimate_features(net, torch.from_numpy(x_hwc.transpose(0, 3, 1, 2)).float()).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    torch.save({"state_dict": None, "what": "no validation split"}, path)
    with pytest.raises(ValueError, match="needs a validation"):
        model_features(path, x_hwc.reshape(5, -1), (6, 6, 2), 3)


def test_config_checks_for_the_spectrum():
    from selfdistill.config_checks import _spectrum_problems

    config = {
        "modes": ["self_distill"],
        "val_fraction": 0,
        "frequency": {"train_subset": 4, "bands": 8, "space": "features"},
    }
    problems = _spectrum_problems(config)
    assert len(problems) == 3 and "frequency.bands" in problems[0] and "modes has no ce" in problems[1]
