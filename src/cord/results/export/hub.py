"""`cord export --push-to-hub REPO`: the export, its card and what made it, uploaded to a dataset
repository. Needs network and a token: the one part of the export no test reaches."""

from __future__ import annotations

from pathlib import Path

from ...data.files import load_dataset
from ...records import CONFIG
from .card import card_path


def push_to_hub(out: str | Path, repo: str, run_dirs: list[str | Path], private: bool = False) -> None:
    """Upload the export at `out`, its card and each source run's config.yaml (as
    `cord/<run>/config.yaml`: what made the data, enough to run it again)."""
    from huggingface_hub import DatasetCard, HfApi

    out = Path(out)
    load_dataset(out).push_to_hub(repo, private=private)
    DatasetCard(card_path(out).read_text(encoding="utf-8")).push_to_hub(repo, repo_type="dataset")
    api = HfApi()
    for run in map(Path, run_dirs):
        api.upload_file(path_or_fileobj=str(run / CONFIG), path_in_repo=f"cord/{run.name}/{CONFIG}", repo_id=repo, repo_type="dataset")
