"""Block keys tie the counter, the table and the builder together; scoring needs no module."""

from archlab import build, count, layout, preset
from archlab.arch.scaling import scale
from archlab.cost.keys import block_specs, distinct_specs
from archlab.cost.scoring import Scorer


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


def test_scorer_equals_the_counter():
    scorer = Scorer()
    for name in ("sd15", "mobilediffusion", "snapfusion"):
        s, c = scorer.score(preset(name)), count(preset(name))
        assert (s.params, s.flops, s.latency_ms) == (c.params, c.flops, None)
    assert len(layout(preset("sd15"))) == len(block_specs(preset("sd15")))
