"""bench_merit.py's side-by-side mode: the authors' code is written from a git directory at the pinned commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.bench_merit import AUTHORS_CODE_FILES, AUTHORS_COMMIT, AUTHORS_MIRROR, write_authors_tree


def test_a_repository_without_the_commit_is_refused_with_the_option_named(tmp_path):
    repo = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    with pytest.raises(SystemExit, match=r"--authors-repo .*trainer\.py at 932ebee"):
        write_authors_tree(repo, tmp_path / "out", "afk")


@pytest.mark.skipif(not AUTHORS_MIRROR.exists(), reason=f"no mirror of the authors' code at {AUTHORS_MIRROR}")
def test_the_authors_code_and_data_are_written_from_the_pinned_commit(tmp_path):
    write_authors_tree(AUTHORS_MIRROR, tmp_path, "afk")
    for path in (*AUTHORS_CODE_FILES, "data/afk/afk_50_preprocessed.txt", "data/afk/map_item_50.txt"):
        shown = subprocess.run(["git", "--git-dir", str(AUTHORS_MIRROR), "show", f"{AUTHORS_COMMIT}:{path}"], capture_output=True, check=True)
        assert (tmp_path / path).read_bytes() == shown.stdout, path
    assert "class Trainer" in Path(tmp_path / "trainer.py").read_text()
