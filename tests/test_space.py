"""Search spaces: seeded sampling, decoding, Optuna define-by-run, enumeration, validation."""

import numpy as np
import optuna
import pytest
import yaml

from archlab import ConfigError, count
from archlab.cost.keys import distinct_specs
from archlab import resources
from archlab.search.space import load_space, space_from_dict, spaces


def test_sampling_is_deterministic_by_seed():
    space = load_space("tiny")
    a = [c for c, _ in space.samples(5, seed=7)]
    b = [c for c, _ in space.samples(5, seed=7)]
    c = [c for c, _ in space.samples(5, seed=8)]
    assert a == b and a != c


def test_every_sample_decodes_and_matches_its_choices():
    space = load_space("mobilediffusion")
    for choices, desc in space.samples(20, seed=0):
        assert len(desc.channels) == choices["depth"]
        assert desc.channels[-1] == choices[f"level{choices['depth'] - 1}.channels"]
        stage = desc.stage("down0")
        assert sum(b.kind == "resnet" for b in stage.blocks) == choices["level0.down_resnets"]
        assert sum(b.kind == "resnet" for b in desc.stage("up0").blocks) == choices["level0.down_resnets"] + 1
        assert space.decode(choices) == desc.replace(name=space.decode(choices).name)


def test_default_space_holds_the_reference_families():
    space = load_space("mobilediffusion")
    sd_like = {"depth": 4, **{f"level{i}.channels": c for i, c in enumerate((320, 640, 1280, 1280))},
               **{f"level{i}.down_resnets": 2 for i in range(4)},
               **{f"level{i}.{k}": 1 for i in range(3) for k in ("down_layers", "up_layers")},
               "level3.down_layers": 0, "level3.up_layers": 0,
               **{f"level{i}.self_attention": True for i in range(4)}, **{f"level{i}.separable": False for i in range(4)},
               "mid.layers": 1, "mid.separable": False, "transformer.ff": "geglu", "transformer.ff_ratio": 4,
               "transformer.shared_kv": False, "transformer.attention": "softmax", "transformer.head_dim": 64}
    sd = count(space.decode(sd_like))
    assert sd.params == 859_520_964 and (sd.conv_blocks, sd.self_attention) == (22, 16)
    md_like = {**{k: v for k, v in sd_like.items() if not k.startswith("level3")}, "depth": 3, "level2.channels": 1024,
               "level0.down_resnets": 1, "level1.down_resnets": 1, "level2.down_resnets": 1,
               "level0.down_layers": 0, "level0.up_layers": 0, "level1.self_attention": False,
               "level2.down_layers": 3, "level2.up_layers": 3, "level2.separable": True, "mid.layers": 6,
               "mid.separable": True, "transformer.ff_ratio": 3, "transformer.shared_kv": True}
    md = count(space.decode(md_like))
    assert (md.conv_blocks, md.self_attention, md.cross_attention) == (11, 15, 18)
    assert 300e6 < md.params < 420e6


def test_optuna_trials_drive_the_same_decoder():
    space = load_space("tiny")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial):
        choices, desc = space.suggest(trial)
        seen.append((choices, desc))
        return count(desc).params

    study.optimize(objective, n_trials=5)
    for (choices, desc), trial in zip(seen, study.trials):
        assert trial.params == choices
        assert desc.channels == space.decode(choices).channels


def test_enumeration_covers_every_sampled_block():
    for name in spaces():
        space = load_space(name)
        enumerated = set(distinct_specs(space.iter_stage_variants()))
        sampled = set(distinct_specs(d for _, d in space.samples(150, seed=11)))
        assert sampled <= enumerated, name
    space = load_space("mobilediffusion")
    assert space.size() > 1_000_000 and len(set(distinct_specs(space.iter_stage_variants()))) < 300


def test_constraints_are_bounded_and_clear():
    data = yaml.safe_load(open(resources.find("spaces", "tiny")))
    data["constraints"] = {"max_params": 10}
    space = space_from_dict(data)
    with pytest.raises(ConfigError, match="no feasible architecture in 1000 draws"):
        space.sample(np.random.default_rng(0))
    data["constraints"] = {"max_params": 300_000}
    space = space_from_dict(data)
    for _, d in space.samples(5, seed=0):
        assert count(d).params <= 300_000


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["levels"][0].__setitem__("channels", []), "levels[0].channels: needs at least one option"),
    (lambda d: d["levels"][0].__setitem__("down_resnets", [0]), "levels[0].down_resnets: 0 is not allowed"),
    (lambda d: d["levels"][0].__setitem__("colour", [1]), "levels[0].colour: unknown field; allowed: channels,"),
    (lambda d: d["levels"][1].__setitem__("self_attention", ["yes"]), "levels[1].self_attention[0]: 'yes' is not true or false"),
    (lambda d: d.__setitem__("depth", [5]), "depth: 5 levels asked but levels describes 3"),
    (lambda d: d["transformer"].__setitem__("ff", ["relu"]), "transformer.ff[0]: 'relu' is not one of geglu, swiglu, gelu, swish"),
    (lambda d: d["transformer"].__setitem__("head_dim", [7]), "levels[0].channels: 16 does not fit"),
    (lambda d: d.__setitem__("constraints", {"max_latency": 3}), "constraints.max_latency: unknown field; allowed: max_params"),
    (lambda d: d["base"].__setitem__("colour", 1), "base.colour: unknown field"),
    (lambda d: d.pop("levels"), "levels: is required"),
    (lambda d: d["mid"].__setitem__("layers", [-1]), "mid.layers: -1 is not allowed"),
    (lambda d: d["levels"][0].__setitem__("channels", [16, 16]), "levels[0].channels: lists an option twice"),
    (lambda d: d["levels"][0].__setitem__("channels", "wide"), "levels[0].channels[0]: 'wide' is not an integer"),
])
def test_invalid_space_names_the_field(change, expected):
    data = yaml.safe_load(open(resources.find("spaces", "tiny")))
    change(data)
    with pytest.raises(ConfigError) as info:
        space_from_dict(data)
    assert expected in str(info.value)
