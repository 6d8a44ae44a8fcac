"""Scale-out: one problem set split over several runs, and their output directories merged.

- `data.shard: I/N` (`cord generate --shard I/N`, applied by `data.select_shard`): a run takes
  problems I, I+N, I+2N, ... of the loaded set (after `data.limit`), e.g. one Slurm array task each;
  every shard is an ordinary run directory that resumes on its own.
- `cord merge DIR... --out DIR`: one run directory from several; refuses duplicate problem ids,
  configs that differ in anything but the shard and the output directory, a shard that stopped
  early (fewer records than its summary.json planned), naming how many it lacks, and a shard of
  the set that no directory holds (`shard 1/2 is missing`); `--allow-missing` merges anyway and
  writes what is missing into the merged summary. Records stream
  from each shard to the merged file: memory stays bounded whatever their number.
- `cord generate ... --ray [ADDRESS]`: the shards run as Ray actors, each owning its engines (local
  models on the GPUs Ray gives it) or sharing the configured server endpoints, into
  `OUT/shards/I-of-N`, merged into OUT when all are done. The same command resumes every shard.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from .command import command_parser
from .config import Config, from_dict, parse_shard, to_dict
from .errors import ConfigError
from .records import CONFIG, RECORDS, SUMMARY, RecordStream, Totals, atomic_write
from .records.resume import as_today, comparable, differences
from .records.rundir import atomic_writer, check_run_directory
from .run import check_models_found, prepare, run

SHARDS_DIR = "shards"


def _merge_key(config: dict) -> dict:
    data = comparable(config)
    data.get("data", {}).pop("shard", None)
    return data


def shard_summary(d: Path) -> dict:
    try:
        return json.loads((d / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}


def missing_shards(configs: list[tuple[Path, dict]]) -> dict[str, Path | None]:
    """The shards ("I/N") of the sets the directories' data.shard split that no directory holds,
    each with the directory it likely is (named as the others are: `sh/0_2` -> `sh/1_2`)."""
    held = {parse_shard(spec): d for d, config in configs if (spec := (config.get("data") or {}).get("shard"))}
    missing: dict[str, Path | None] = {}
    for (i, n), d in sorted(held.items()):
        for other in range(n):
            if (other, n) not in held:
                missing.setdefault(f"{other}/{n}", sibling(d, i, other))
    return missing


def sibling(d: Path, index: int, other: int) -> Path | None:
    """`d` (shard `index`'s directory) with its one number equal to `index` made `other`; None when
    that number is not there exactly once."""
    number = re.compile(rf"(?<!\d){index}(?!\d)")
    if len(number.findall(d.name)) != 1:
        return None
    return d.with_name(number.sub(str(other), d.name))


def merge(dirs: list[str | Path], out: str | Path, overwrite: bool = False, extra: dict | None = None, allow_missing: bool = False) -> dict:
    """Merge run directories into `out` (written whole, or not at all); return its summary.
    `allow_missing`: merge shards that stopped early too, and a set with a shard missing (the missing
    count and shards go in the summary)."""
    dirs, out = [Path(d) for d in dirs], Path(out)
    if not dirs:
        raise ConfigError("merge: name at least one run directory")
    configs, first_key, shards, seen = [], None, [], {}
    for d in dirs:
        check_run_directory(d)
        config = yaml.safe_load((d / CONFIG).read_text()) or {}
        key = _merge_key(config)
        first_key = key if first_key is None else first_key
        if key != first_key:
            where, there, here = differences(first_key, key)[0]
            diff = f"{where}: {json.dumps(there)} vs {json.dumps(here)}"
            raise ConfigError(f"{d}: its config differs from {configs[0][0]}'s ({diff}); only runs of one config merge")
        configs.append((d, config))
        summary, records = shard_summary(d), RecordStream(d / RECORDS)
        for problem in records.ids():  # read from each line's head: no record is held
            if problem in seen:
                raise ConfigError(f"{d}: problem {problem!r} is also in {seen[problem]}; shards must not overlap")
            seen[problem] = d
        missing = max(0, summary.get("planned", 0) - len(records))
        if missing and not allow_missing:
            raise ConfigError(
                f"{d}: stopped early: {missing} of its {summary['planned']} planned problems have no record; run it again to "
                "finish (the same command resumes), or merge anyway with --allow-missing"
            )
        shards.append(
            {
                "dir": str(d),
                "problems": len(records),
                **({"missing": missing} if missing else {}),
                **{k: summary[k] for k in ("wall_seconds", "peak_memory") if k in summary},
            }
        )
    absent = missing_shards(configs)
    if absent and not allow_missing:
        named = ", ".join(f"{name} (likely {d})" if d else name for name, d in absent.items())
        verb = "is" if len(absent) == 1 else "are"
        raise ConfigError(
            f"shard {named} {verb} missing: merge every shard of the set (run a missing one with --shard I/N), or merge anyway "
            "with --allow-missing"
        )
    if out.exists() and any(p.name != SHARDS_DIR for p in out.iterdir()) and out not in dirs and not overwrite:
        raise ConfigError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    config = from_dict(Config, as_today(configs[0][1]))  # shards written by an earlier cord
    config.data.shard, config.output_dir = None, str(out)
    totals = Totals()
    out.mkdir(parents=True, exist_ok=True)
    # Records first, then config and summary, each one atomic rename: a crash leaves no torn file.
    with atomic_writer(out / RECORDS) as merged:
        for d in dirs:
            for record in RecordStream(d / RECORDS):
                totals.add(record)
                merged.write(record.to_line().encode("utf-8"))
    summary = totals.summary()
    walls = [s["wall_seconds"] for s in shards if "wall_seconds" in s]
    if walls:
        summary["wall_seconds"] = max(walls)  # the shards ran side by side
    summary["shards"] = shards
    missing = sum(s.get("missing", 0) for s in shards)
    if missing:
        summary["missing"] = missing  # problems the shards planned and never finished (--allow-missing)
    if absent:
        summary["missing_shards"] = list(absent)  # shards of the set never merged (--allow-missing)
    summary.update(extra or {})
    atomic_write(out / CONFIG, yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
    atomic_write(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------- Ray


class ShardWorker:
    """A Ray actor: runs one shard of a config into its own run directory with its own engines."""

    def run(self, config: dict, overwrite: bool) -> dict:
        return run(from_dict(Config, config), overwrite=overwrite, progress=False)


def run_on_ray(config: Config, address: str | None = None, workers: int | None = None, overwrite: bool = False) -> dict:
    """Shard `config` over `workers` Ray actors (default: one per GPU in the cluster, else 2) and
    merge their run directories into config.output_dir."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'cord-distill[ray]'") from None
    prepare(config)  # one-line errors before a cluster starts
    check_models_found(config)
    if config.data.shard is not None:
        raise ConfigError("data.shard: --ray shards the problems itself; leave data.shard unset")
    out = Path(config.output_dir)
    if overwrite and out.exists():
        shutil.rmtree(out)
    ray.init(address=address or None, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = workers or gpus or 2
        actor = ray.remote(ShardWorker).options(num_cpus=1, num_gpus=gpus / workers if gpus else 0)
        jobs, dirs = [], []
        for i in range(workers):
            shard = from_dict(Config, to_dict(config))
            shard.data.shard = f"{i}/{workers}"
            shard.output_dir = str(out / SHARDS_DIR / f"{i}-of-{workers}")
            dirs.append(shard.output_dir)
            jobs.append(actor.remote().run.remote(to_dict(shard), False))
        try:
            summaries = ray.get(jobs)
        except ray.exceptions.RayTaskError as err:  # a shard's one-line error, not a remote traceback
            if isinstance(getattr(err, "cause", None), ConfigError):
                raise err.cause from None
            raise
    finally:
        ray.shutdown()
    counts = {key: sum(s.get(key, 0) for s in summaries) for key in ("new", "resumed")}
    return merge(dirs, out, overwrite=True, extra={**counts, "ray": {"workers": workers, "gpus": gpus}})


def main(argv: list[str] | None = None) -> int:
    """`cord merge DIR... --out DIR [--overwrite]`."""
    import sys

    parser = command_parser(prog="cord merge", description="Merge run directories (e.g. shards) into one.")
    parser.add_argument("dirs", nargs="+", help="run directories of one config")
    parser.add_argument("--out", required=True, help="the merged run directory")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.add_argument("--allow-missing", action="store_true", help="merge shards stopped early or missing (what is missing is kept)")
    args = parser.parse_args(argv)
    summary = merge(args.dirs, args.out, overwrite=args.overwrite, allow_missing=args.allow_missing)
    lacking = f"; {summary['missing']} planned problems have no record" if summary.get("missing") else ""
    if summary.get("missing_shards"):
        lacking += f"; missing: shard {', '.join(summary['missing_shards'])}"
    print(f"merged {summary['problems']} problems from {len(args.dirs)} run directories into {args.out}{lacking}", file=sys.stderr)
    return 0
