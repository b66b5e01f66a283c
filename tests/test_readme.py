"""The README's promises: its Python examples run, and its quick start is the two
commands that CI runs too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> List[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_run(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("python")[index], f"README.md python block {index}", "exec"), {})


def test_there_are_examples() -> None:
    assert len(blocks("python")) >= 3


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in re.search(r"```sh\n(.*?)```", quick, re.S).group(1)
                .strip().splitlines()]  # type: ignore[union-attr]
    assert commands == ["pip install . && sls-envelope demo", "bash scripts/test.sh"]
    assert "exec bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_linked_docs_exist() -> None:
    links = set(re.findall(r"\]\(([^)#]+)\)", README))
    assert "docs/STREAM.md" in links
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).is_file(), link
