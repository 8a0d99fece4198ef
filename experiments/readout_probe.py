"""Is a trained encoder's chirp slope lost in its features or in its heads? (issue 12: where 𝒫-SAGA fails)

For each checkpoint of a twin table's run folders (and the untrained encoder of each seed), the encoder's features
on the synthetic train and test splits are read at two depths: ``conv``, the global mean after the conv blocks
(``channels`` values), and ``latent``, the shared layer's output (``latent_dim`` values, eval mode). Two readouts
fitted on the train split's features (standardised) predict the true θ of the test split: a ridge regression (λ by
5-fold cross-validation on train; what a linear head can find) and k nearest neighbours (k by leave-one-out; what is
there in any form a neighbourhood keeps). Their test θ L1 ‰ per parameter, beside the encoder's own heads', says
what the features hold: if 𝒫-SAGA's features predict the slope as well as AdamW's while its heads do
not, the slope is lost in the readout; if they predict it no better than the untrained encoder's, it is lost in
the features.

    python experiments/readout_probe.py --runs outputs/twin_granular_g32 \
        --arms param mss_linear mss_random scrapl_adamw scrapl_psaga scrapl_thetais \
        --extra adamw_b32=outputs/twin_batch32/scrapl_adamw_b32 psaga_b32=outputs/twin_batch32/scrapl_psaga_b32 --tag g32

writes ``experiments/results/readout_probe_<tag>.{json,md}``. The checkpoints are the ones the table tests
(``checkpoints/best.ckpt``); their code commit comes from each folder's ``twin_run.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runplan.py (not a package)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
LAMBDAS = tuple(10.0 ** k for k in range(-4, 5))
DEPTHS = ("conv", "latent")


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale of ``x (M, D)``; a constant feature (a dead channel) gets scale 1, so it stays 0."""
    sd = x.std(0)
    return x.mean(0), np.where(sd > 1e-12, sd, 1.0)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on standardised ``x (M, D)`` → ``y (M, U)``: (mean, scale, weights (D, U), intercept (U,))."""
    mu, sd = standardiser(x)
    z = (x - mu) / sd
    y0 = y.mean(0)
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y0))
    return mu, sd, w, y0


def ridge_predict(model: tuple, x: np.ndarray) -> np.ndarray:
    mu, sd, w, y0 = model
    return np.clip((x - mu) / sd @ w + y0, 0.0, 1.0)  # θ lives in [0, 1]: so does the readout


def choose_lambda(x: np.ndarray, y: np.ndarray, lambdas: Sequence[float] = LAMBDAS, folds: int = 5,
                  seed: int = 0) -> float:
    """The λ with the lowest mean absolute error over ``folds`` train folds (one λ for all parameters)."""
    if x.shape[0] < folds:
        raise ValueError(f"{x.shape[0]} rows cannot be split into {folds} folds")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    parts = np.array_split(order, folds)
    errors = []
    for lam in lambdas:
        err = 0.0
        for k in range(folds):
            train = np.concatenate([p for j, p in enumerate(parts) if j != k])
            model = ridge_fit(x[train], y[train], lam)
            err += np.abs(ridge_predict(model, x[parts[k]]) - y[parts[k]]).mean()
        errors.append(err)
    return float(lambdas[int(np.argmin(errors))])


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, k: int,
                exclude_self: bool = False) -> np.ndarray:
    """Mean θ of the ``k`` nearest train rows (Euclidean, on features standardised by the train split)."""
    mu, sd = standardiser(x_train)
    a, b = (x_train - mu) / sd, (x - mu) / sd
    d = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]
    if exclude_self:  # leave-one-out on the train split itself
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1)[:, :k]
    return y_train[idx].mean(1)


def choose_k(x: np.ndarray, y: np.ndarray, ks: Sequence[int] = (1, 3, 5, 9, 15, 25)) -> int:
    """The k with the lowest leave-one-out mean absolute error on the train split."""
    errors = [np.abs(knn_predict(x, y, x, k, exclude_self=True) - y).mean() for k in ks]
    return int(ks[int(np.argmin(errors))])


def _errors(pred: np.ndarray, theta: np.ndarray, names: Sequence[str]) -> dict:
    """Test θ L1 ‰ by the training app's own metric: overall and per parameter (keyed by name)."""
    from scraplab.metrics.theta import theta_l1_summary
    summary = theta_l1_summary(torch.from_numpy(pred), torch.from_numpy(theta), names)
    return {"theta_l1_permille": summary["theta_l1_permille"],
            **{n: summary[f"theta_l1_permille/{n}"] for n in names}}


def probe_depth(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                names: Sequence[str]) -> dict:
    """Test θ L1 ‰ (overall and per parameter) of two readouts fitted on ``train = (features, θ)``: ridge (what a
    linear head can find) and k nearest neighbours (what is there in any form a neighbourhood keeps)."""
    lam, k = choose_lambda(*train), choose_k(*train)
    return {"ridge": {**_errors(ridge_predict(ridge_fit(*train, lam), test[0]), test[1], names), "lambda": lam},
            "knn": {**_errors(knn_predict(*train, test[0], k), test[1], names), "k": k}}


@torch.no_grad()
def encoder_features(encoder: torch.nn.Module, audio: torch.Tensor, batch: int = 64) -> dict[str, np.ndarray]:
    """``conv (M, C)``, ``latent (M, L)`` and the heads' ``theta_hat (M, U)`` of an eval-mode encoder on ``audio``."""
    encoder.eval()
    out: dict[str, list] = {"conv": [], "latent": [], "theta_hat": []}
    for i in range(0, audio.shape[0], batch):
        conv, latent = encoder.cnn.features(encoder.scalogram(audio[i:i + batch]))
        theta_hat = encoder.cnn.predict(latent)
        for k, v in (("conv", conv), ("latent", latent), ("theta_hat", theta_hat)):
            out[k].append(v.double().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def split_audio(cfg, synth) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """(target audio ``(M, N)``, θ ``(M, U)``) of the train and test splits, rendered as the training step does."""
    from hydra.utils import instantiate

    from scraplab.data.datamodule import build_datamodule
    dm = build_datamodule(instantiate(cfg.data), synth)
    dm.setup()
    out = {}
    for split in ("train", "test"):
        ds = dm.splits[split]
        with torch.no_grad():
            x = synth(ds.theta, ds.seed)
        out[split] = (x.reshape(x.shape[0], -1), ds.theta.double().numpy())
    return out


def probe_encoder(encoder: torch.nn.Module, data: dict, names: Sequence[str]) -> dict:
    feats = {s: encoder_features(encoder, data[s][0]) for s in ("train", "test")}
    row = {}
    for depth in DEPTHS:
        row[depth] = probe_depth((feats["train"][depth], data["train"][1]),
                                 (feats["test"][depth], data["test"][1]), names)
    row["heads"] = _errors(feats["test"]["theta_hat"], data["test"][1], names)
    return row


def untrained_encoder(cfg) -> torch.nn.Module:
    """The encoder train.py starts from for ``cfg.seed`` (seeded, then built after the synth, loss and sampler)."""
    import lightning as L

    from scraplab.cli.build import build_all
    L.seed_everything(int(cfg.seed), workers=True)
    return build_all(cfg)["encoder"].eval()


READOUTS = (("heads",), ("latent", "ridge"), ("latent", "knn"), ("conv", "ridge"), ("conv", "knn"))


def readout(row: dict, key: tuple[str, ...]) -> dict:
    for k in key:
        row = row[k]
    return row


def run_folders(runs: Optional[Path], arms: Sequence[str], seeds: Optional[Sequence[int]],
                extra: Sequence[str] = ()) -> list[tuple[str, str, Path]]:
    """(arm, seed name, run folder) of ``runs/ARM/seedS`` and of ``extra`` entries ``NAME=RUN_FOLDER`` (seed from
    the run's config)."""
    out = []
    for arm in arms:
        if runs is None:
            raise ValueError("--arms needs --runs (the table's run folders)")
        folders = sorted((runs / arm).glob("seed*"), key=lambda f: int(f.name[4:]))
        folders = [f for f in folders if seeds is None or int(f.name[4:]) in seeds]
        if not folders:
            raise FileNotFoundError(f"no run folders {runs / arm}/seed*")
        out += [(arm, f.name, f) for f in folders]
    for item in extra:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--extra takes NAME=RUN_FOLDER, got {item!r}")
        out.append((name, "", Path(folder)))
    return out


def run(folders: Sequence[tuple[str, str, Path]]) -> dict:
    from scraplab.cli.checkpoint import load_encoder
    rows: dict[str, dict] = {}
    commits: dict[str, str] = {}
    seed_cfgs: dict[int, object] = {}
    data = names = None
    for arm, seed_name, folder in folders:
        ckpt = folder / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt} does not exist (has the run finished?)")
        synth, encoder, cfg = load_encoder(ckpt)
        if data is None:
            data, names = split_audio(cfg, synth), list(synth.param_names)
        seed_name = seed_name or f"seed{int(cfg.seed)}"
        record = folder / "twin_run.json"
        commits[f"{arm}/{seed_name}"] = json.loads(record.read_text())["commit"] if record.is_file() else "?"
        seed_cfgs.setdefault(int(cfg.seed), cfg)
        row = rows.setdefault(arm, {})[seed_name] = probe_encoder(encoder, data, names)
        print(f"{arm}/{seed_name}: " + ", ".join(
            f"{'/'.join(k)} {readout(row, k)['theta_l1_permille']:.1f}" for k in READOUTS), flush=True)
    if data is None:
        raise ValueError("no run folders to probe")
    for seed, cfg in sorted(seed_cfgs.items()):
        rows.setdefault("untrained", {})[f"seed{seed}"] = probe_encoder(untrained_encoder(cfg), data, names)
    return {"rows": rows, "param_names": names, "run_commits": commits,
            "n_train": int(data["train"][0].shape[0]), "n_test": int(data["test"][0].shape[0])}


def summarise(doc: dict) -> dict:
    """Mean ± 95 % CI over seeds of every (arm, readout, metric); readouts named ``heads``, ``latent/ridge``, …"""
    from scraplab.metrics.stats import mean_ci95
    out: dict[str, dict] = {}
    keys = ["theta_l1_permille", *doc["param_names"]]
    for arm, seeds in doc["rows"].items():
        out[arm] = {"n_seeds": len(seeds)}
        for key in READOUTS:
            name = "/".join(key)
            out[arm][name] = {k: dict(zip(("mean", "ci95"), mean_ci95([readout(s, key)[k] for s in seeds.values()],
                                                                        f"{arm} {name} {k}"))) for k in keys}
    return out


def write_markdown(doc: dict, summary: dict, md: Path) -> None:
    names = doc["param_names"]
    commits = ", ".join(sorted(set(c[:10] for c in doc["run_commits"].values())))
    lines = ["# What a readout finds in the encoder's features (issue 12)", "",
             f"`{doc['provenance']['command']}` at commit `{doc['provenance']['commit'][:10]}` (checkpoints: the "
             f"runs' best.ckpt, trained at {commits}). Readouts fitted on the {doc['n_train']} train rows' features "
             f"(standardised): ridge (λ by 5-fold CV) and k nearest neighbours (k by leave-one-out); tested on the "
             f"{doc['n_test']} test rows. `conv`: the global mean after the conv blocks; `latent`: the shared layer; "
             "`heads`: the run's own prediction. Test θ L1 ‰, mean ± 95 % CI over seeds, (" + " / ".join(names)
             + ").", "",
             "| arm | seeds | " + " | ".join("/".join(k) for k in READOUTS) + " |",
             "|---|---|" + "---|" * len(READOUTS)]

    def cell(s: dict) -> str:
        return (f"{s['theta_l1_permille']['mean']:.1f} ± {s['theta_l1_permille']['ci95']:.1f} ("
                + " / ".join(f"{s[n]['mean']:.1f}" for n in names) + ")")
    for arm, s in summary.items():
        lines.append(f"| {arm} | {s['n_seeds']} | " + " | ".join(cell(s["/".join(k)]) for k in READOUTS) + " |")
    md.write_text("\n".join(lines) + "\n")


def main(argv: Optional[list[str]] = None) -> dict:
    import os

    from runplan import measurement_provenance
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, help="a twin table's run folders (ARM/seedS/)")
    ap.add_argument("--arms", nargs="+", default=[])
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--extra", nargs="+", default=[], metavar="NAME=RUN_FOLDER",
                    help="other run folders (their seed from their config), e.g. another plan's run")
    ap.add_argument("--tag", default="g32")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    prov = measurement_provenance("experiments/readout_probe.py", argv)
    torch.set_num_threads(1)
    doc = run(run_folders(args.runs, args.arms, args.seeds, args.extra))
    doc["provenance"] = {**prov, "load_after": os.getloadavg()}
    doc["summary"] = summarise(doc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"readout_probe_{args.tag}.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, doc["summary"], args.out / f"readout_probe_{args.tag}.md")
    return doc


if __name__ == "__main__":
    main()
