"""Pins every published number beside the CIFAR studies (selfdistill.published) with its full citation: paper,
table, what the number measures and the recipe. Changing a number or its citation must change this file too, after
reading the source again (docs/science.md, "Published numbers")."""

from __future__ import annotations

import pytest

from selfdistill import published as pub

ELR = (
    "ELR paper (Liu et al. 2020, arXiv 2007.00151), Table 1: test accuracy, mean ± sd over 5 noise draws "
    "(the caption does not say which epoch); ResNet-34, cross-entropy"
)
BADLABELS = (
    "BadLabels README (github.com/zjfheart/BadLabels), Table 1: best-epoch / last-epoch test accuracy, no sd "
    "given; Standard Training (plain CE), PreAct ResNet-18, SGD lr 0.02, 300 epochs"
)
CO_TEACHING = (
    "Co-teaching paper (Han et al. 2018, arXiv 1804.06872), Table 5, row Standard: mean test accuracy over the "
    "last 10 epochs, mean ± sd over 5 runs; plain CE, its 9-layer CNN, Adam, 200 epochs, pairflip-45%"
)
CIFAR_N = (
    "CIFAR-N paper (Wei et al. 2022, arXiv 2110.12088), its CIFAR-10N table (unverified there: read as "
    "reprinted by later papers): best-epoch test accuracy, mean ± sd over 5 runs; ResNet-34, cross-entropy"
)

#: (dataset, noise type, rate, human key, value, citation) of every entry, in table order
EXPECTED = [
    ("cifar10", "symmetric", 0.4, None, "81.88 ± 0.29", ELR),
    ("cifar10", "asymmetric", 0.4, None, "80.11 ± 1.44", ELR),
    ("cifar10", "symmetric", 0.4, None, "79.90 / 64.79", BADLABELS),
    ("cifar10", "asymmetric", 0.4, None, "85.22 / 77.04", BADLABELS),
    ("cifar10", "pair", 0.45, None, "49.50 ± 0.42", CO_TEACHING),
    ("cifar10", "human", None, "aggre", "87.77 ± 0.38", CIFAR_N),
    ("cifar10", "human", None, "worse", "77.69 ± 1.55", CIFAR_N),
]


def test_every_entry_is_pinned_with_its_value_and_full_citation():
    actual = [(p.dataset, p.noise_type, p.rate, p.key, p.accuracy, p.citation) for p in pub.PUBLISHED]
    assert actual == EXPECTED


def test_every_entry_names_a_table_and_what_the_number_measures():
    for p in pub.PUBLISHED:
        assert p.source and p.table and p.measure and p.recipe
        assert "epoch" in p.measure, f"{p.accuracy} ({p.source}): say which epoch the number is, or that it is unsaid"


def test_the_pair_entry_is_co_teachings_plain_ce_not_co_teaching_itself():
    (pair,) = [p for p in pub.PUBLISHED if p.noise_type == "pair"]
    assert pair.accuracy == "49.50 ± 0.42" and "Standard" in pair.table and "pairflip-45%" in pair.recipe
    cell = pub.published_cell("cifar10", "pair40")
    assert cell == f"49.50 ± 0.42 ({pair.citation}, at 45% noise)"


@pytest.mark.parametrize("noise", ["sym40", "asym40", "pair40", "human_aggre", "human_worse"])
def test_the_cell_shows_each_matching_number_with_its_table_and_measure(noise):
    cell = pub.published_cell("cifar10", noise)
    for p in pub.matching("cifar10", noise):
        assert f"{p.accuracy} ({p.citation}" in cell
