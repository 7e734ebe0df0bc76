"""The malformed-input corpus: a declarative table of small synthetic inputs, each broken in one way.

Every :class:`Case` lists the files it needs (generated here from a valid base table, so the corpus
stays small, readable and reviewable; nothing comes from real datasets), the ``cdrec`` command line to
run (``{d}`` is the case's folder) and a fragment the one-line error must contain. The test
materialises each case in a temporary folder and runs it through the CLI.

Decisions the corpus pins down (documented in README "Input rules"):

* ids are opaque: numbers or any non-empty text, Unicode and inner spaces allowed; a text id with
  leading/trailing whitespace, or a blank one, is an error (usually a ``", "`` delimiter);
* a (user, item, domain) pair in several rows of a user file (an exact copy or not) is an error
  naming the file line and ``data.duplicates`` (``first``, ``last`` or ``mean`` keep one row per
  pair): a repeated pair would sit in both train and test;
* extra header columns that no role maps to are ignored; a row with more or fewer fields than the
  header is an error;
* timestamps must be finite and >= 0; ratings finite numbers.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Callable

import yaml

HEADER = ["user", "item", "domain", "rating", "timestamp"]
COLUMNS = {role: role for role in HEADER}

DIR = object()
"""File content marker: create a directory at that path."""


def base_rows(n_users: int = 8, per_domain: int = 4, n_items: int = 12) -> list[list]:
    """A valid two-domain table: every user has ``per_domain`` interactions in domains A and B."""
    rows = []
    for u in range(n_users):
        for d, dom in enumerate("AB"):
            for k in range(per_domain):
                item = (u * 3 + k * 5 + d) % n_items
                rows.append([f"u{u}", f"{dom.lower()}{item}", dom, 1 + (u + k) % 5, 1_000 + 100 * u + 10 * k + d])
    return rows


def csv_text(rows: list[list], header: list[str] = HEADER, sep: str = ",") -> str:
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def with_value(row: int, col: str, value) -> str:
    rows = base_rows()
    rows[row][HEADER.index(col)] = value
    return csv_text(rows)


def run_config(**over) -> str:
    """A valid ``cdrec run`` config over ``{d}/data.csv`` with keys replaced by ``over`` (dotted)."""
    cfg = {
        "model": "bprmf",
        "seed": 0,
        "data": {"name": "table", "path": "{d}/data.csv", "columns": dict(COLUMNS)},
        "split": {"n_negatives": 3},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "progress": False},
        "model_params": {"dim": 4},
    }
    for key, value in over.items():
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is DROP:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return yaml.safe_dump(cfg, sort_keys=False)


DROP = object()
"""``run_config(key=DROP)`` removes the key."""


@dataclass
class Case:
    name: str
    files: dict[str, str | bytes | object]
    argv: list[str]
    expect: str
    setup: Callable | None = None
    as_other_user: bool = False
    """Needs a non-root reader (file permissions); see the test."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables set while the case runs."""


def run_case(name: str, expect: str, data: str | bytes | object | None = None, *, extra: dict | None = None, argv: list[str] | None = None, **over) -> Case:
    files: dict = {"cfg.yaml": run_config(**over)}
    files["data.csv"] = csv_text(base_rows()) if data is None else data
    files.update(extra or {})
    return Case(name, files, argv or ["run", "{d}/cfg.yaml", "--out", "{d}/out"], expect)


def _dup_rows() -> str:
    rows = base_rows()
    return csv_text(rows + [list(rows[5])])


def _one_domain_users() -> str:
    return csv_text([r for r in base_rows() if (int(r[0][1:]) % 2 == 0) == (r[2] == "A")])


def _disjoint_users() -> str:
    return csv_text([r for r in base_rows() if (int(r[0][1:]) < 4) == (r[2] == "A")])


def _user_with_every_item() -> str:
    """u0 touched all 12 items of domain A, in the first rows (training rows of a ``row``-ordered split)."""
    rows = [r for r in base_rows() if not (r[0] == "u0" and r[2] == "A")]
    return csv_text([["u0", f"a{i}", "A", 3, 10 + i] for i in range(12)] + rows)


def _repeated_pair() -> str:
    rows = base_rows()
    return csv_text(rows[:3] + [rows[1][:3] + [5, 9_999]] + rows[3:])


def _truncated_gzip() -> bytes:
    blob = gzip.compress(csv_text(base_rows() * 20).encode())
    return blob[: len(blob) // 2]


def _shared_item() -> str:
    rows = base_rows()
    rows[0][1] = "shared"
    rows[-1][1] = "shared"  # same item id in domains A and B
    return csv_text(rows)


def _recbole(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows) + "\n"


def _run_dir(model_bytes: bytes) -> dict:
    return {"data.csv": csv_text(base_rows()), "run/config.yaml": run_config(), "run/model.pt": model_bytes}


CASES: list[Case] = [
    # ------------------------------------------------------------------ files and formats
    run_case("zero_byte_file", "empty (0 bytes)", ""),
    run_case("header_only", "no interactions", csv_text([])),
    run_case("directory_instead_of_file", "is a directory", DIR),
    run_case("missing_file", "file not found", extra={}, **{"data.path": "{d}/nowhere.csv"}),
    run_case("truncated_gzip", "cannot parse", extra={"data.csv.gz": _truncated_gzip()}, **{"data.path": "{d}/data.csv.gz"}),
    run_case("truncated_last_line", "row 65", csv_text(base_rows()) + "u9,a1"),
    run_case("wrong_delimiter_semicolon", "set data.sep to the file's delimiter", csv_text(base_rows(), sep=";"), **{"data.sep": ","}),
    run_case("wrong_delimiter_tab", "set data.sep to the file's delimiter", csv_text(base_rows(), sep="\t"), **{"data.sep": ","}),
    run_case("missing_item_column", "missing column 'item'", csv_text([r[:1] + r[2:] for r in base_rows()], ["user", "domain", "rating", "timestamp"])),
    run_case("missing_mapped_rating_column", "missing column 'rating'", csv_text([r[:3] + r[4:] for r in base_rows()], ["user", "item", "domain", "timestamp"])),
    run_case("extra_field_in_a_row", "Expected 5 fields", csv_text(base_rows()[:3]) + "u1,a1,A,3,1000,surplus\n" + csv_text(base_rows()[3:]).split("\n", 1)[1]),
    run_case("non_utf8_bytes", "UnicodeDecodeError", csv_text(base_rows()).encode() + b"u1,\xff\xfe,A,3,99\n"),
    run_case("non_numeric_rating", "'rating'", with_value(3, "rating", "five")),
    run_case("nan_rating", "NaN", with_value(3, "rating", "nan")),
    run_case("inf_rating", "infinite", with_value(3, "rating", "inf")),
    run_case("empty_rating_cell", "'rating'", with_value(3, "rating", "")),
    run_case("negative_timestamp", "negative timestamps", with_value(7, "timestamp", -5)),
    run_case("non_numeric_timestamp", "timestamps", with_value(7, "timestamp", "yesterday")),
    run_case("inf_timestamp", "infinite timestamps", with_value(7, "timestamp", "inf")),
    run_case("nan_timestamp", "timestamps", with_value(7, "timestamp", "NaN")),
    run_case("duplicate_rows", "line 66 repeats line 7 exactly", _dup_rows()),
    run_case("repeated_pair_other_rating", "line 5 repeats the pair of line 3 with other values", _repeated_pair()),
    run_case("unknown_duplicates_policy", "data.duplicates: expected one of error, first, last, mean, got 'drop'", **{"data.duplicates": "drop"}),
    run_case("missing_user_id", "missing user ids", with_value(4, "user", "")),
    run_case("missing_domain_value", "missing domains", with_value(4, "domain", "")),
    run_case("id_with_leading_space", "whitespace", with_value(2, "item", " a3")),
    run_case("blank_id", "whitespace", with_value(2, "user", "   ")),
    run_case("item_in_two_domains", "each item in one domain", _shared_item()),
    run_case("label_column_not_numeric", "label column 'click'", csv_text([r + ["yes"] for r in base_rows()], HEADER + ["click"]),
             **{"data.columns": {**COLUMNS, "labels": "click"}}),
    run_case("label_not_binary", "not 0 or 1 (first at row 3: 2)", csv_text([r + [2 if i == 2 else i % 2] for i, r in enumerate(base_rows())], HEADER + ["click"]),
             **{"data.columns": {**COLUMNS, "labels": "click"}}),
    run_case("unknown_column_role", "unknown roles", **{"data.columns": {**COLUMNS, "weight": "rating"}}),
    run_case("table_without_path", "needs a file path", **{"data.path": DROP}),
    # ------------------------------------------------------------------ domains and data semantics
    run_case("unknown_domain", "data.keep_domains: unknown domain 'Z'", **{"data.keep_domains": ["A", "Z"]}),
    run_case("empty_domain_after_filter", "has no interactions", csv_text([r[:3] + [5 if r[2] == "A" else 1] + r[4:] for r in base_rows()]), **{"data.min_rating": 4}),
    run_case("users_in_one_domain_only", "no overlapping users", _one_domain_users(), **{"data.overlap_only": True}),
    run_case("no_overlapping_users", "no overlapping users", _disjoint_users(), **{"data.overlap_only": True}),
    run_case("more_domains_than_items", "only 24 items", **{"data.domains": "uniform-items:500"}),
    run_case("more_domains_than_users", "only 8 users", **{"data.domains": "uniform-users:100"}),
    run_case("zero_domains", "data.domains: 'uniform-items:0' asks for 0 domains", **{"data.domains": "uniform-items:0"}),
    run_case("unknown_domain_builder", "unknown domain builder", **{"data.domains": "by-moon-phase"}),
    run_case("age_bins_without_ages", "no user attribute 'age'", **{"data.domains": "age-bins"}),
    run_case("one_interaction_per_user", "leave-one-out gives no test rows", csv_text([r for r in base_rows() if r[4] % 100 < 2])),
    run_case("user_touched_every_item", "12 of the 12 items of domain 'A'", _user_with_every_item(),
             **{"split.full_ranking": True, "split.protocol": "ratio", "split.order": "row"}),
    run_case("too_many_negatives", "too few items", **{"split.n_negatives": 50}),
    run_case("kcore_removes_everything", "survives the 50-core", **{"data.kcore": 50}),
    run_case("k_core_negative", "data.kcore", **{"data.kcore": -2}),
    run_case("min_rating_above_all", "no rating >= 10", **{"data.min_rating": 10}),
    # ------------------------------------------------------------------ configs
    run_case("unknown_top_level_key", "unknown key 'epochs'", **{"epochs": 3}),
    run_case("unknown_nested_key", "unknown key 'epocs'", **{"train.epocs": 3}),
    run_case("wrong_type_int", "train.epochs: expected an integer", **{"train.epochs": "ten"}),
    run_case("wrong_type_list", "eval.ks: expected a list", **{"eval.ks": 5}),
    run_case("wrong_type_bool", "train.progress: expected true or false", **{"train.progress": "maybe"}),
    run_case("wrong_type_section", "train: expected a mapping", **{"train": [1, 2]}),
    run_case("k_zero", "eval.ks: expected a number > 0", **{"eval.ks": [0, 10]}),
    run_case("k_negative", "eval.ks: expected a number > 0", **{"eval.ks": [-3]}),
    run_case("ratio_above_one", "data.synthetic.shared_weight: expected a number in [0, 1]", **{"data.name": "synthetic", "data.synthetic": {"shared_weight": 1.5}}),
    run_case("ratio_below_zero", "data.synthetic.presence: expected a number in [0, 1]", **{"data.name": "synthetic", "data.synthetic": {"presence": -0.1}}),
    run_case("model_param_out_of_range", "model_params.dim (bprmf): expected a number >= 1, got 0", **{"model_params.dim": 0}),
    run_case("ctr_param_out_of_range", "model_params.n_experts (mmoe): expected a number >= 1, got 0",
             **{"model": "mmoe", "model_params": {"n_experts": 0}}),
    run_case("sequential_dropout_of_one", "model_params.dropout (sasrec-dt): expected a number in [0, 1), got 1",
             **{"model": "sasrec-dt", "model_params": {"dropout": 1.0}}),
    run_case("layer_size_zero", "model_params.layers (assisted-mlp): expected a number >= 1, got 0",
             **{"model": "assisted-mlp", "model_params": {"layers": [16, 0]}}),
    run_case("mtal_eta_not_positive", "setting.eta: expected a number > 0 or 'optimize', got -0.3",
             **{"model": "aae", "model_params": {}, "setting": {"eta": -0.3}}),
    run_case("split_ratios_not_summing_to_one", "split.ratios", **{"split.protocol": "ratio", "split.ratios": [0.9, 0.3]}),
    run_case("negative_seed", "seed: expected a number", **{"seed": -1}),
    run_case("zero_batch_size", "train.batch_size", **{"train.batch_size": 0}),
    run_case("negative_lr", "train.lr", **{"train.lr": -0.1}),
    run_case("zero_max_batches", "train.max_batches", **{"train.max_batches": 0}),
    run_case("unknown_optimizer", "train.optimizer", **{"train.optimizer": "rmsprop"}),
    run_case("unknown_metric", "train.metric", **{"train.metric": "FOO@10"}),
    run_case("unknown_device", "train.device", **{"train.device": "tpu"}),
    run_case("unknown_scope", "scope", **{"scope": "both"}),
    run_case("unknown_protocol", "split.protocol", **{"split.protocol": "kfold"}),
    run_case("decreasing_buckets", "eval.buckets", **{"eval.buckets": [5, 2]}),
    run_case("unknown_model", "unknown model 'nosuch'", **{"model": "nosuch"}),
    run_case("unknown_dataset", "unknown dataset 'nosuch'", **{"data.name": "nosuch"}),
    Case("invalid_yaml", {"cfg.yaml": "train: [1, 2\n"}, ["run", "{d}/cfg.yaml", "--out", "{d}/out"], "not valid YAML"),
    Case("yaml_list_at_top", {"cfg.yaml": "- a\n- b\n"}, ["run", "{d}/cfg.yaml", "--out", "{d}/out"], "mapping at the top level"),
    Case("config_is_a_directory", {"cfg.yaml": DIR}, ["run", "{d}/cfg.yaml", "--out", "{d}/out"], "is a directory"),
    Case("config_missing", {}, ["run", "{d}/cfg.yaml", "--out", "{d}/out"], "config file not found"),
    run_case("set_without_equals", "expected key=value", argv=["run", "{d}/cfg.yaml", "--out", "{d}/out", "--set", "train.lr"]),
    run_case("set_unknown_key", "unknown key 'lrr'", argv=["run", "{d}/cfg.yaml", "--out", "{d}/out", "--set", "train.lrr=1"]),
    # ------------------------------------------------------------------ run directories
    run_case("resume_missing_run_dir", "nothing to resume", argv=["run", "{d}/cfg.yaml", "--out", "{d}/out", "--resume"]),
    run_case("out_is_a_file", "is a file", extra={"out": "not a folder\n"}),
    Case("world_size_without_torchrun", {"cfg.yaml": run_config(), "data.csv": csv_text(base_rows())}, ["run", "{d}/cfg.yaml", "--out", "{d}/out"],
         "launch with torchrun", env={"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "", "MASTER_PORT": ""}),
    run_case("resume_from_truncated_checkpoint", "cannot read the checkpoint", argv=["run", "{d}/cfg.yaml", "--out", "{d}/out", "--resume"],
             extra={"out/config.yaml": run_config(), "out/checkpoint-joint.pt": b"\x80\x02truncated"}),
    Case("evaluate_not_a_run_dir", {"run/notes.txt": "hello\n"}, ["evaluate", "{d}/run"], "no config.yaml"),
    Case("evaluate_truncated_model", _run_dir(b"PK\x03\x04truncated"), ["evaluate", "{d}/run"], "cannot read the saved model"),
    Case("evaluate_unknown_part", _run_dir(b"x"), ["evaluate", "{d}/run", "--part", "train"], "--part"),
    # ------------------------------------------------------------------ RecBole atomic files (data stats)
    Case("recbole_untyped_header", {"x.inter": _recbole("user_id\titem_id", ["1\t2", "2\t3"])}, ["data", "stats", "{d}/x.inter"], "name:token"),
    Case("recbole_missing_item_field", {"x.inter": _recbole("user_id:token\trating:float", ["1\t2", "2\t3"])}, ["data", "stats", "{d}/x.inter"], "item_id:token"),
    Case("recbole_non_numeric_float", {"x.inter": _recbole("user_id:token\titem_id:token\trating:float", ["1\t2\t4", "2\t3\tgood"])}, ["data", "stats", "{d}/x.inter"], "non-numeric"),
    Case("recbole_duplicate_rows", {"x.inter": _recbole("user_id:token\titem_id:token", ["1\t2", "2\t3", "1\t2"])}, ["data", "stats", "{d}/x.inter"], "line 4 repeats line 2 exactly"),
    Case("recbole_folder_without_inter", {"folder/readme.txt": "x\n"}, ["data", "stats", "{d}/folder"], "exactly one .inter"),
    Case("stats_missing_file", {}, ["data", "stats", "{d}/missing.csv"], "missing.csv: file not found"),
    Case("recbole_zero_byte", {"x.inter": ""}, ["data", "stats", "{d}/x.inter"], "empty (0 bytes)"),
    Case("stats_unreadable_file", {"x.csv": csv_text(base_rows())}, ["data", "stats", "{d}/x.csv"], "permission denied",
         setup=lambda d: (d / "x.csv").chmod(0), as_other_user=True),
]
