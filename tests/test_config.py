import pytest

from cdrec.config import load_config, parse_overrides
from cdrec.errors import CdrecError


def test_layering_defaults_model_user_overrides(tmp_path):
    cfg = load_config(None)
    assert cfg.model == "bprmf" and cfg.model_params["dim"] == 128  # model YAML layer
    user = tmp_path / "c.yaml"
    user.write_text("data:\n  name: ml-100k\ntrain:\n  lr: 0.01\nmodel_params:\n  dim: 64\n")
    cfg = load_config(user, ["train.lr=0.05", "split.n_negatives=999"])
    assert cfg.data.name == "ml-100k" and cfg.train.lr == 0.05 and cfg.model_params["dim"] == 64
    assert cfg.model_params["reg"] == 1e-5 and cfg.split.n_negatives == 999 and cfg.train.epochs == 50


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=3", "c=[1, 2]", "d=true", "e=text"]) == {"a": {"b": 3}, "c": [1, 2], "d": True, "e": "text"}


def test_exponent_numbers_are_numbers_in_overrides_and_yaml(tmp_path):
    """PyYAML reads ``1e-5`` (no dot) as a string; typed float fields still accept it."""
    user = tmp_path / "c.yaml"
    user.write_text("train:\n  weight_decay: 1e-5\n")
    cfg = load_config(user, ["train.lr=3E-4"])
    assert cfg.train.weight_decay == 1e-5 and cfg.train.lr == 3e-4
    with pytest.raises(CdrecError, match="train.epochs: expected an integer"):
        load_config(None, ["train.epochs=1e3"])
    merit = load_config(None, ["model=merit", "model_params.temperature=7.5E-1"])
    from cdrec.models import registry

    assert registry.build_params("merit", merit.model_params).temperature == 0.75


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.lrr=1"], "unknown key 'lrr'"),
        (["train.lr=fast"], "train.lr: expected a number"),
        (["train.epochs=1.5"], "train.epochs: expected an integer"),
        (["model=nope"], "unknown model 'nope'"),
        (["model_params.size=3"], "unknown key 'size'"),
        (["split.protocol=kfold"], "split.protocol"),
        (["train.device=tpu"], "train.device"),
        (["eval.ks=[0]"], "eval.ks"),
        (["noequals"], "expected key=value"),
    ],
)
def test_bad_configs(sets, message):
    with pytest.raises(CdrecError, match=message):
        load_config(None, sets)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(CdrecError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(CdrecError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_mistake_in_the_yaml_file_names_the_file_and_an_override_can_fix_it(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: bprmf\ntrain:\n  epoch: 2\n")
    with pytest.raises(CdrecError, match=r"^.*exp\.yaml: train: unknown key 'epoch'"):
        load_config(path)
    path.write_text("model: bprmf\ntrain:\n  epochs: x\n")
    assert load_config(path, ["train.epochs=3"]).train.epochs == 3
    path.write_text("model: bprmf\n")
    with pytest.raises(CdrecError, match=r"^train.epochs: expected an integer"):  # the override's mistake: no file named
        load_config(path, ["train.epochs=x"])


def test_columns_mapping_replaces_whole_but_merges_role_by_role(tmp_path):
    """A YAML ``data.columns`` or a whole ``--set data.columns={...}`` replaces the mapping below it;
    ``--set data.columns.ROLE=name`` changes that one role and keeps the others."""
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  name: table\n  path: x.csv\n  columns: {user: customer, item: product, timestamp: ts}\n")
    assert load_config(path).data.columns == {"user": "customer", "item": "product", "timestamp": "ts"}
    one = load_config(path, ["data.columns.rating=stars", "data.columns.timestamp=when"])
    assert one.data.columns == {"user": "customer", "item": "product", "timestamp": "when", "rating": "stars"}
    assert load_config(path, ["data.columns={user: u, item: i}"]).data.columns == {"user": "u", "item": "i"}
    assert load_config(path, ["data.columns={user: u, item: i}", "data.columns.rating=r"]).data.columns == {"user": "u", "item": "i", "rating": "r"}
