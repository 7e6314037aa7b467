"""Helpers shared by several test modules (test modules import from here, never from one another).

- the repository, the smoke study's facts, and the one way the tests run Snakemake (:func:`snakemake`,
  :func:`snakemake_command` for a run that the test signals or kills itself);
- training in a new process, as a Snakemake job does, forked from a server that imported the library once
  (:func:`run`, :func:`attempts`);
- the float64 pure-Python references of the losses (math.exp / math.log loops over Python floats).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from selfdistill.checkpoint import FAULT_ENV
from selfdistill.figure_table import FIGURE_TABLE
from selfdistill.planning import MEMORISATION_TARGETS

# ----------------------------------------------------------------------------------------------------------------
# The repository, the smoke study and Snakemake
# ----------------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "smoke.yaml"
SETTING = Path("results/smoke/pair40")
#: the figures of one noise setting that the smoke study draws: every figure of the figure table
FIGURES = [entry.name for entry in FIGURE_TABLE]
#: how the tests start Chromium: headless as root, offline (no background traffic to refused hosts), no GPU
HEADLESS_CHROMIUM = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: what a copy of the repository needs to run its workflow (its own Snakefile, library, configs and profiles)
REPO_FILES = ("Snakefile", "config.yaml")
REPO_FOLDERS = ("workflow", "src", "config", "profiles", "envs")


def copy_repository(dest: Path) -> Path:
    """Copy the workflow and the library into ``dest`` (created), so that a test may edit them; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copy(REPO / name, dest / name)
    for name in REPO_FOLDERS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def copy_study(src: Path, dest: Path) -> Path:
    """Copy a folder with a finished study in it (results/ and Snakemake's .snakemake/ records) to ``dest``.

    Modification times are kept (copy2) and links stay links, so that Snakemake sees the copy as up to date."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def snakemake_command(
    workdir: Path,
    *args: str,
    configfile: Path | Sequence[Path] | None = SMOKE,
    cores: int | None = 2,
    snakefile: Path | None = None,
) -> list[str]:
    """The command line that runs a Snakefile in ``workdir`` with ``configfile`` (one or several, merged in order;
    None: none given, the workflow's own ``configfile:`` applies).

    ``snakefile`` None: ``workdir``'s own Snakefile when ``workdir`` is a copy of the repository (so that edits of the
    copy count), else the repository's. ``cores=None`` leaves the cores to a profile among ``args`` (or to none)."""
    if snakefile is None:
        snakefile = workdir / "Snakefile" if (workdir / "Snakefile").is_file() else REPO / "Snakefile"
    # ``args`` before --configfile, whose list of files would take a target that followed it for one more file
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args]
    if configfile is not None:
        files = [configfile] if isinstance(configfile, (str, Path)) else list(configfile)
        cmd += ["--configfile", *map(str, files)]
    return cmd + ([] if cores is None else ["--cores", str(cores)])


def snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | Sequence[Path] | None = SMOKE,
    cores: int | None = 2,
    snakefile: Path | None = None,
    check: bool = True,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` (see :func:`snakemake_command`) and return the finished process, its output as
    text; with ``check`` a non-zero exit raises with the command and its whole output. ``env``: the whole
    environment of the process (default this one's)."""
    cmd = snakemake_command(workdir, *args, configfile=configfile, cores=cores, snakefile=snakefile)
    result = subprocess.run(cmd, cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def expected_targets(overrides: Mapping | None = None) -> list[Path]:
    """Every file the smoke study ends with, relative to its working directory; ``overrides``: top-level keys (e.g.
    ``seeds``, ``modes``) that replace the smoke config's."""
    smoke = yaml.safe_load(SMOKE.read_text()) | dict(overrides or {})
    files = [SETTING / name for name in ("histories.csv", "summary.csv", "summary.md", "frequency.csv")]
    files += [SETTING / "figures" / f"{fig}.png" for fig in FIGURES]
    files += [SETTING / name for name in MEMORISATION_TARGETS]
    for seed in smoke["seeds"]:
        files.append(SETTING / f"seed{seed}" / "data.h5")
        for mode in smoke["modes"]:
            run = SETTING / f"seed{seed}" / mode
            files += [
                run / name for name in ("history.csv", "outputs.h5", "model.pt", "frequency.csv", "memorisation.csv")
            ]
    return files


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the job-stats table of a dry run into {rule: count}."""
    jobs = {}
    for line in output.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if match and match.group(1) != "total":
            jobs[match.group(1)] = int(match.group(2))
    return jobs


# ----------------------------------------------------------------------------------------------------------------
# Training in a new process (like a Snakemake job)
# ----------------------------------------------------------------------------------------------------------------

MODEL = {"arch": "mlp", "width": 32, "depth": 1}
TRAIN = {"epochs": 4, "batch_size": 64, "lr": 0.05}
DISTILL = {"seq_alpha": 0.5, "seq_warmup": 1, "seq_ramp": 1}
#: the training processes of :func:`run` are forked from one server process that imported the library once (and
#: torch's compiler front end, which building an optimiser imports): a process that imported them itself spends
#: about 3 s of CPU on it before training, for every one of the tests' ~60 killed, resumed and rerun trainings
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["selfdistill.training", "torch._dynamo"])


class Trainer:
    """A training process started by :func:`run`, read like a finished or running ``subprocess.Popen``:
    ``returncode`` (negative: killed by that signal), ``stdout`` and ``stderr`` (text, once it has ended)."""

    def __init__(self, process: multiprocessing.process.BaseProcess, output: Path):
        self.process, self.output, self.stdout, self.stderr = process, output, None, None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(f"training in {self.output}", timeout)
        if self.stdout is None:
            self.stdout = (self.output / "stdout").read_text()
            self.stderr = (self.output / "stderr").read_text()
            shutil.rmtree(self.output)
        return self.process.exitcode


def _train(args: dict, environ: dict, output: str) -> None:
    """The body of a :func:`run` process: this run's environment, its output to files, then one training run."""
    os.environ.clear()
    os.environ.update(environ)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(Path(output) / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    from selfdistill.training import train_run

    out = args.pop("out")
    train_run(
        args.pop("data"),
        f"{out}/history.csv",
        f"{out}/outputs.h5",
        f"{out}/model.pt",
        out_early_stopped=f"{out}/model_early_stopped.pt",
        log_path=args.pop("log"),
        **args,
    )


def run(data, out: Path, mode="ce", fault=None, train=None, wait=True, log_dir=None, **extra) -> Trainer:
    """Train in a new process (like a Snakemake job: its own pid, signals and exit status, ``fault`` its
    ``SELFDISTILL_FAULT``); returns it finished (``wait``, at most 300 s), else running.

    The log goes to ``log_dir`` (default ``out``)/train.log."""
    out.mkdir(parents=True, exist_ok=True)
    args = {
        "data": str(data),
        "out": str(out),
        "log": str(Path(log_dir or out) / "train.log"),
        "mode": mode,
        "seed": 0,
        "model": MODEL,
        "train": TRAIN | (train or {}),
        "distill": DISTILL,
        "freq_subset": 100,
        "device": "cpu",
        "record_epochs": "all",
    } | extra
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    output = Path(tempfile.mkdtemp(prefix="trainer-"))
    process = FORKSERVER.Process(target=_train, args=(args, env, str(output)))
    process.start()
    trainer = Trainer(process, output)
    if wait:
        trainer.wait(timeout=300)
    return trainer


def attempts(out: Path) -> tuple[str, str]:
    """The train log of ``out`` split into what earlier attempts wrote and what the last one wrote."""
    earlier, _, last = (out / "train.log").read_text().rpartition("----- new attempt")
    return earlier, last


# ----------------------------------------------------------------------------------------------------------------
# Slow float64 references of the losses
# ----------------------------------------------------------------------------------------------------------------

RTOL = 1e-5
ATOL = 1e-6
B, C = 17, 7


def as_rows(x):
    return [[float(v) for v in row] for row in x.detach().double().tolist()]


def ref_log_softmax(row):
    m = max(row)
    s = 0.0
    for z in row:
        s += math.exp(z - m)
    lse = m + math.log(s)
    return [z - lse for z in row]


def ref_softmax(row):
    return [math.exp(v) for v in ref_log_softmax(row)]


def ref_argmax(row):
    best = 0
    for k in range(1, len(row)):
        if row[k] > row[best]:
            best = k
    return best


def onehot(k, n):
    return [1.0 if j == k else 0.0 for j in range(n)]


def ref_soft_ce(z, t):
    """Mean over rows of −Σ_k t_k log p_k."""
    total = 0.0
    for row, trow in zip(z, t):
        logp = ref_log_softmax(row)
        total += -sum(tk * lp for tk, lp in zip(trow, logp))
    return total / len(z)


def ref_kl(z, t):
    """Mean over rows of Σ t log t − Σ t log p with 0·log 0 = 0."""
    total = 0.0
    for row, trow in zip(z, t):
        logp = ref_log_softmax(row)
        for tk, lp in zip(trow, logp):
            if tk > 0:
                total += tk * math.log(tk)
            total -= tk * lp
    return total / len(z)


def ref_ce(z, y):
    return ref_soft_ce(z, [onehot(k, len(z[0])) for k in y])


def ref_self_distill_targets(z, y):
    n = len(z[0])
    pred = [ref_argmax(row) for row in z]
    lam = sum(1 for p, k in zip(pred, y) if p == k) / len(z)
    t = []
    for p, k in zip(pred, y):
        t.append([(1 - lam) * a + lam * b for a, b in zip(onehot(k, n), onehot(p, n))])
    return t, lam


def ref_bootstrap_soft_targets(z, y, beta):
    n = len(z[0])
    return [[beta * a + (1 - beta) * p for a, p in zip(onehot(k, n), ref_softmax(row))] for row, k in zip(z, y)]


def ref_bootstrap_hard_targets(z, y, beta):
    n = len(z[0])
    return [
        [beta * a + (1 - beta) * b for a, b in zip(onehot(k, n), onehot(ref_argmax(row), n))] for row, k in zip(z, y)
    ]


def ref_grad(z, t):
    """d/dz of mean_b(−Σ t log softmax(z)) with t held fixed (rows of t sum to 1): (p − t)/B."""
    out = []
    for row, trow in zip(z, t):
        p = ref_softmax(row)
        s = sum(trow)
        out.append([(s * pk - tk) / len(z) for pk, tk in zip(p, trow)])
    return np.array(out)


def make_batch(n_match, seed=0, batch=B, classes=C):
    """float32 logits and labels where exactly ``n_match`` rows have argmax(z) == y (the first rows)."""
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(batch, classes, generator=g)
    pred = logits.argmax(dim=1)
    shift = torch.randint(1, classes, (batch,), generator=g)
    labels = (pred + shift) % classes
    labels[:n_match] = pred[:n_match]
    return logits.float(), labels.long()


def close(a, b):
    return math.isclose(float(a), float(b), rel_tol=RTOL, abs_tol=ATOL)
