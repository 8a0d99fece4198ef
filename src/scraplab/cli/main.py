"""The ``scraplab`` command: one entry point, one subcommand per tool.

    scraplab train synth=tr808                 scraplab eval ckpt=RUN/checkpoints/best.ckpt
    scraplab match ckpt=... input=DIR out=DIR  scraplab match mode=optimize synth=granular loss=scrapl input=DIR out=DIR
    scraplab render synth=tr808 n=8 out=DIR    scraplab warmup shard=0 n_shards=4 experiment=paper_granular
    scraplab distance A B --paths 16           scraplab export ckpt=... format=torchscript out=FILE

train, eval and match are Hydra apps (``KEY=VALUE`` overrides, ``GROUP=OPTION``, ``--help`` lists the config groups
and the composed config); render and warmup take the same ``KEY=VALUE`` syntax; ``SUBCOMMAND --help`` lists each
one's options. ``python train.py`` / ``eval.py`` / ``match.py`` at the repository root are thin shims over the same
functions.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line description); modules are imported only when their command runs
COMMANDS = {
    "train": ("scraplab.cli.train", "main", "train an encoder (Hydra: synth=, loss=, optim=, sampler=, experiment=)"),
    "eval": ("scraplab.cli.eval", "main", "test a checkpoint on its run's test split (or data=wav_folder)"),
    "match": ("scraplab.cli.match", "main", "match audio files: mode=encoder (ckpt=) or mode=optimize (synth=)"),
    "render": ("scraplab.cli.render", "main", "render random examples of a synth to WAV files"),
    "warmup": ("scraplab.cli.warmup", "main", "θ-IS warm-up as a job array (shard=K / merge=true, n_shards=S)"),
    "distance": ("scraplab.cli.distance", "main", "JTFS (exact or K-path SCRAPL estimate) and MSS distances"),
    "export": ("scraplab.cli.export", "main", "export a trained encoder (TorchScript / ONNX / torch.export)"),
}


def usage() -> str:
    lines = ["usage: scraplab SUBCOMMAND [ARGS ...]   (scraplab SUBCOMMAND --help for its options)", ""]
    lines += [f"  {name:<9} {desc}" for name, (_, _, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"scraplab: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    # Hydra apps and the hand-parsed tools all read sys.argv: present the subcommand as the program
    sys.argv = [f"scraplab {name}", *rest]
    result = getattr(importlib.import_module(module), func)()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
