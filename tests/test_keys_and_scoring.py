"""Block keys tie the counter, the table and the builder together; scoring needs no module."""

import numpy as np

from archlab import Predictor, build, count, layout, load_space, preset
from archlab.arch.scaling import scale
from archlab.cost.keys import block_specs, distinct_specs


def test_keys_name_shapes_and_choices_but_not_positions():
    desc = preset("sd15")
    specs = block_specs(desc)
    by_site = {site.name: spec for site, spec in specs}
    assert by_site["down0.0"].key == by_site["down0.2"].key  # same block, same shapes: one key
    assert by_site["down0.1"].key.startswith("transformer(layers=1,sa=1,ca=1,heads=8,ff=geglu,ffr=4,kv=0,att=softmax,proj=conv)")
    assert "|c=320,res=64,ctx=77x768" in by_site["down0.1"].key and by_site["down0.1"].key.endswith("|b=1,float32")
    assert "in=2560,out=1280,res=8" in by_site["up3.0"].key  # the concatenated skip is in the input width
    assert len(distinct_specs([desc])) < len(specs)


def test_spec_module_is_the_builders_block():
    desc = scale(preset("mobilediffusion"), width=0.1, resolution=16, text_dim=32)
    model = build(desc)
    for site, spec in block_specs(desc):
        ours = sum(p.numel() for p in model.block(site.stage, site.index).parameters())
        assert sum(p.numel() for p in spec.module().parameters()) == ours == spec.cost().params
        out = spec.module()(*spec.inputs())
        assert out.shape[1] == site.out_channels


def test_scores_equal_the_per_block_count():
    predictor = Predictor()
    for name in ("sd15", "mobilediffusion", "snapfusion"):
        s, c = predictor.score(preset(name)), count(preset(name))
        assert (s.params, s.flops, s.latency_ms) == (c.params, c.flops, {})
        assert c.params == c.stem.params + sum(b.cost.params for b in c.blocks)
    assert len(layout(preset("sd15"))) == len(block_specs(preset("sd15")))


def test_cached_stage_costs_give_the_same_totals_as_fresh_ones():
    """Scores come from costs cached per placed stage; a fresh predictor must agree on every candidate."""
    space = load_space("mobilediffusion")
    warm = Predictor()
    rng = np.random.default_rng(5)
    descs = [space.decode(space.pick(lambda n, o: o[int(rng.integers(len(o)))])) for _ in range(40)]
    for d in descs:
        warm.score(d)
    for d in descs:
        assert warm.score(d) == Predictor().score(d) and warm.score(d).params == count(d).params
