"""The figure table: every figure of a setting, with everything the pipeline needs to know about it, in one place.

Each :class:`Figure` gives its name (the file ``{setting}/figures/<name>.png``), the tidy table it is drawn from, the
name of the :mod:`selfdistill.figures` function that draws it, the keyword arguments that function takes from the
config, and its caption in the HTML report. Everything else reads this table: the planner (the targets, the figure
rule's input and parameters), the report (``workflow/report/figure.rst`` prints the caption the rule hands it) and
the tests (``tests/test_figures.py`` checks that every plotter exists and accepts its options).

Adding a figure is one entry here and one ``plot_<name>`` function in :mod:`selfdistill.figures` (with its test in
``tests/test_figures.py``); nothing else changes.

Standard library only: the Snakefile imports it and parses fast, without matplotlib, seaborn or torch. No job's code
imports it (the figure job gets the plotter's name and its options as rule parameters), so editing a caption reruns
nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: The tidy tables a figure can be drawn from (``{setting}/<table>``, written by the aggregate steps).
HISTORIES = "histories.csv"
FREQUENCY = "frequency.csv"
SPECTRUM = "spectrum.csv"
SPECTRUM_ENERGY = "spectrum_energy.csv"
SPECTRUM_CONVERGENCE = "spectrum_convergence.csv"
MEMORISATION = "memorisation.csv"


def frequency_source(config: Mapping) -> str:
    """The output source the frequency figures draw: the softmax outputs when they are analysed, else the first
    configured source (logits)."""
    sources = config["frequency"]["sources"]
    return "probs" if "probs" in sources else sources[0]


def no_options(config: Mapping) -> dict:
    """A figure drawn from its table alone."""
    return {}


def deltas_and_source(config: Mapping) -> dict:
    """The δ panels (``frequency.plot_deltas``; none given: the plotter spreads its own) and the output source."""
    return {"deltas": config["frequency"]["plot_deltas"] or None, "source": frequency_source(config)}


def delta_and_source(config: Mapping) -> dict:
    """One δ (``frequency.plot_delta``) and the output source."""
    return {"delta": config["frequency"]["plot_delta"], "source": frequency_source(config)}


#: The output source of the frequency figures, in the captions' words.
SOURCE_WORDS = {"probs": "softmax outputs", "logits": "logits"}
NO_VALIDATION_NOTE = """
This study has no validation split (val_fraction 0), so there is no early-stopping signal: only the last-epoch and
oracle bars are drawn, and there is no early-stopped reference line.
"""


def caption_fields(config: Mapping) -> dict[str, str]:
    """The config-dependent words a caption may name as ``{field}``: ``{source}``, the outputs the frequency
    figures draw, and ``{no_validation}``, a closing note for a study without a validation split (else empty)."""
    return {
        "source": SOURCE_WORDS[frequency_source(config)],
        "no_validation": NO_VALIDATION_NOTE.strip() if config.get("val_fraction") == 0 else "",
    }


@dataclass(frozen=True)
class ReportCaption:
    """A figure's caption for the HTML report, handed to ``workflow/report/figure.rst`` as a rule parameter
    (``{{ snakemake.params.caption.text }}``: Snakemake 9 accepts neither a function nor a wildcard in ``caption=``).

    Not a string on purpose: Snakemake records only plain values (strings, numbers, containers) of a job's
    parameters to decide what reruns, so a reworded caption reruns no figure; and the report's "Job parameters"
    line shows this object's short form instead of repeating the caption.
    """

    figure: str
    text: str

    def __str__(self) -> str:
        return f"the caption of {self.figure} (selfdistill.figure_table)"


@dataclass(frozen=True)
class Figure:
    """One figure of a setting.

    ``caption`` is reStructuredText (indentation and surrounding blank lines are dropped); ``{source}`` and
    ``{no_validation}`` in it are filled from the config (:func:`caption_fields`), so literal braces are written
    ``{{`` and ``}}``. ``options(config)`` gives the plotter's keyword arguments beyond ``mode_order``.
    """

    name: str
    table: str
    plotter: str
    caption: str
    options: Callable[[Mapping], dict] = field(default=no_options)

    def plot_options(self, config: Mapping) -> dict:
        """Every keyword argument of the plotter: the config's mode order, then the figure's own options."""
        return {"mode_order": config["modes"], **self.options(config)}

    def report_caption(self, config: Mapping) -> ReportCaption:
        """The caption of this figure in the report of a study with ``config``."""
        text = textwrap.dedent(self.caption).strip().format(**caption_fields(config))
        return ReportCaption(self.name, text)


#: Every figure the pipeline builds per setting, in the order of the report and of the targets.
FIGURE_TABLE: tuple[Figure, ...] = (
    Figure(
        name="accuracy",
        table=HISTORIES,
        plotter="plot_accuracy",
        caption="""
            Test accuracy (left, clean test labels) and accuracy on the held-out **noisy** validation split (right)
            per training mode and epoch; lines are means over seeds, shaded bands ±1 sd (no band for a single seed).
            Each ▼ marks one seed's early-stopping epoch, the epoch of best noisy-validation accuracy (ties →
            earliest), drawn on its mode's mean curve. A cross-entropy curve that peaks and then falls shows
            memorisation of the wrong labels; self-distillation "beats early stopping" when its last-epoch accuracy
            is at least that of ce at its ▼.
        """,
    ),
    Figure(
        name="loss",
        table=HISTORIES,
        plotter="plot_loss",
        caption="""
            Training loss (left) and test loss (right) per training mode and epoch, mean over seeds with ±1 sd bands.
            The training loss is each mode's own objective on its (noisy or mixed) targets, so its level is not
            comparable across modes; the test loss is cross-entropy against the clean test labels and is comparable.
            A test loss that climbs while the training loss keeps falling is the signature of fitting wrong labels.
        """,
    ),
    Figure(
        name="memorization",
        table=HISTORIES,
        plotter="plot_memorization",
        caption="""
            For the training samples whose label was flipped, the percentage the network predicts as their **noisy**
            label (memorised, left) and as their **clean** label (corrected, right), per mode and epoch, mean ± sd
            over seeds. Plain cross-entropy eventually memorises most flipped labels; a method that resists noise
            keeps the memorised share low and the corrected share high. This is the curve that explains the
            test-accuracy figure.
        """,
    ),
    Figure(
        name="frequency_ratio",
        table=FREQUENCY,
        plotter="plot_frequency_ratio",
        options=deltas_and_source,
        caption="""
            Low-frequency energy fraction ‖Kf‖² / (‖Kf‖² + ‖f − Kf‖²) of the network's outputs on a fixed training
            subset, where K is a row-normalised Gaussian low-pass filter of width δ over the input images (one panel
            per δ; top row, mean ± sd over seeds). Dashed lines give the same fraction for the clean and the noisy
            one-hot label matrices: label noise adds high-frequency content, so a network that fits the noisy labels
            drifts towards the noisy-label line. The bottom row shows ratio(mode) − ratio(ce), paired by seed;
            values above zero mean the mode's outputs keep more low-frequency content than plain cross-entropy.
        """,
    ),
    Figure(
        name="frequency_error",
        table=FREQUENCY,
        plotter="plot_frequency_error",
        options=delta_and_source,
        caption="""
            Relative error of the network's {source} against the noisy one-hot labels, split by frequency (Xu et
            al.'s filtering method) on a fixed training subset for one filter width δ: e_low (top left) and e_high
            (top right), mean ± sd over seeds. The heat maps show the same two errors per mode (rows low/high,
            columns epochs, mean over seeds) on one shared colour scale. The frequency principle predicts e_low to
            fall first; e_high falling late means the network is fitting the high-frequency part of the targets,
            the label noise.
        """,
    ),
    Figure(
        name="frequency_by_delta",
        table=FREQUENCY,
        plotter="plot_frequency_by_delta",
        caption="""
            Low-frequency energy fraction ‖Kf‖² / (‖Kf‖² + ‖f − Kf‖²) of the network's outputs at the last epoch
            against the filter width δ (log scale), per training mode (mean ± sd over seeds); one panel per split
            (training subset, test) and output source (softmax probabilities, logits). Dashed lines give the same
            fraction for the clean and the noisy one-hot label matrices (the test split has no noisy labels). Every
            curve starts near 1 at small δ (the filter is then nearly the identity) and falls as δ grows. At a given
            δ, a mode whose outputs sit above the noisy-label line and near the clean-label line has not absorbed the
            high-frequency content that the label noise adds.
        """,
    ),
    Figure(
        name="frequency_clean_vs_noisy",
        table=FREQUENCY,
        plotter="plot_frequency_clean_vs_noisy",
        options=delta_and_source,
        caption="""
            Relative error of the network's softmax outputs on the training subset, split by frequency (Xu et al.'s
            filtering method, one filter width δ), measured against the **noisy** one-hot labels the network was
            trained on (left) and against the **clean** labels (right): e_low (top row) and e_high (bottom row) per
            mode and epoch, mean ± sd over seeds; each panel's legend lists the modes' values at the last epoch.
            Falling e_high against the noisy labels means the network fits their high-frequency part; when it does
            so by fitting the noise, e_high against the clean labels stops falling or rises again. A mode that
            resists the noise keeps e_high against the clean labels low.
        """,
    ),
    Figure(
        name="spectrum_error",
        table=SPECTRUM,
        plotter="plot_spectrum_error",
        caption="""
            Relative error ‖P_b(h − y)‖ / ‖P_b y‖ of the softmax outputs on the training subset in each frequency
            band b (rows; band 1 = the lowest frequencies: eigenvectors of the normalised Gaussian kernel with the
            largest eigenvalues) and stored epoch (columns), mean over seeds, one panel per mode, against the noisy
            (top) and the clean (bottom) labels. The frequency principle predicts the low bands to darken first;
            a mode that fits the label noise ends with low error against the noisy labels in the high bands.
        """,
    ),
    Figure(
        name="noise_spectrum",
        table=SPECTRUM_ENERGY,
        plotter="plot_noise_spectrum",
        caption="""
            Share of the energy ‖P_b f‖² / ‖f‖² of the clean one-hot labels (black) and of the label noise (noisy −
            clean one-hot, red) in each frequency band of the training subset (band 1 lowest), mean ± sd over seeds.
            If the label noise is "high-frequency", the red bars sit in the last bands while the black ones sit in
            the first.
        """,
    ),
    Figure(
        name="spectrum_convergence",
        table=SPECTRUM_CONVERGENCE,
        plotter="plot_spectrum_convergence",
        caption="""
            The first epoch at which each band's relative error has made 50% (top) or 90% (bottom) of its total drop
            (from the first stored epoch to its minimum), against the band (1 = lowest frequency), per mode, mean ±
            sd over seeds, against the noisy (left) and the clean (right) labels; bands whose error never falls are
            left out. The legend gives each mode's mean Spearman ρ of band against epoch: rising curves (ρ > 0)
            mean low frequencies converge first. Intervals and verdicts: spectrum_summary.md.
        """,
    ),
    Figure(
        name="accuracy_bars",
        table=HISTORIES,
        plotter="plot_accuracy_bars",
        caption="""
            Test accuracy (clean test labels) per training mode under three stopping rules, side by side: the last
            epoch (solid), the early-stopped epoch chosen by the best **noisy**-validation accuracy (hatched, the
            honest protocol) and the best test epoch (dotted, an oracle upper bound that uses test labels). Bars are
            means over seeds with ±1 sd error bars, dots are single seeds, numbers are the means. The dashed line
            marks early-stopped cross-entropy: self-distillation "beats early stopping" when its last-epoch bar
            reaches it.
            {no_validation}
        """,
    ),
    Figure(
        name="memorisation_by_agreement",
        table=MEMORISATION,
        plotter="plot_memorisation_by_agreement",
        caption="""
            For the training samples of the analysed subset whose label was flipped: the percentage whose noisy label
            the network predicts at the last epoch (memorised), per quintile of their local label agreement (q1: the
            fifth whose neighbours, weighted by the Gaussian kernel of the frequency filter, least often carry the
            same noisy label; q5: most often), one line per mode, mean over seeds with the 95% t-interval over seeds
            as a band (none for a single seed). A low-agreement noisy label is a high-frequency feature of the label
            function; the frequency principle predicts that it is fitted last, so a line that rises from q1 to q5
            says the mode memorises the smooth noise first and the isolated noise last, or never.
        """,
    ),
)


def figure(name: str) -> Figure:
    """The table's entry of the figure called ``name``."""
    for entry in FIGURE_TABLE:
        if entry.name == name:
            return entry
    raise KeyError(f"no figure {name!r}; figures: {', '.join(entry.name for entry in FIGURE_TABLE)}")
