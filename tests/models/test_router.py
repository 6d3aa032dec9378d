import json

import pytest
import torch

from hddm_p2p.diffusion import Ensemble, ExpertSpec
from hddm_p2p.errors import CompatibilityError, ManifestError, SpecError
from hddm_p2p.models.dit import count_parameters
from hddm_p2p.models.router import Router, RouterConfig, load_router, make_router, router_preset, save_router

IDS = ["sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared CPU
    yield
    torch.set_num_threads(old)


def _random_router(k=3, seed=0):
    torch.manual_seed(seed)
    model = Router(router_preset("tiny", k))
    for p in model.parameters():  # DiT init zeroes the head; give every output a signal
        torch.nn.init.normal_(p, std=0.05)
    return model


def test_dit_b2_has_about_129m_parameters():
    with torch.device("meta"):
        model = Router(router_preset("DiT-B/2", 8, in_channels=4))
    assert 125e6 < count_parameters(model) < 135e6


def test_logits_shape_and_time_broadcast():
    model = _random_router()
    x = torch.randn(4, 3, 32, 32)
    out = model(x, 0.3)
    assert out.shape == (4, 3)
    assert torch.allclose(out, model(x, torch.full((4,), 0.3)))
    assert not torch.allclose(out, model(x, 0.9))  # time matters


def test_save_load_round_trip(tmp_path):
    model = _random_router()
    save_router(tmp_path, model, {"kind": "router", "experts": IDS})
    loaded, desc = load_router(tmp_path)
    x = torch.randn(2, 3, 32, 32)
    assert desc["experts"] == IDS == loaded.experts
    assert torch.equal(loaded(x, 0.5), model.eval()(x, 0.5))


def test_loaded_router_plugs_into_the_ensemble(tmp_path):
    save_router(tmp_path, _random_router(), {"kind": "router", "experts": IDS})
    router, _ = load_router(tmp_path)
    targets = [torch.full((3, 32, 32), float(j)) for j in range(3)]
    experts = [((lambda x, t, c, j=j: x - targets[j]), ExpertSpec("velocity", "flow-linear")) for j in range(3)]
    ens = Ensemble(experts, router=router, mode="top-1")
    x = torch.randn(5, 3, 32, 32)
    v = ens.velocity(x, torch.full((5,), 0.5))
    chosen = router(x, torch.full((5,), 0.5)).argmax(1)
    for b in range(5):  # top-1: the velocity is exactly the chosen expert's
        assert torch.allclose(v[b], x[b] - targets[chosen[b]], atol=1e-5)


def test_mismatched_experts_list(tmp_path):
    save_router(tmp_path, _random_router(), {"kind": "router", "experts": IDS})
    desc = json.loads((tmp_path / "router.json").read_text())
    desc["experts"] = IDS[:2]
    (tmp_path / "router.json").write_text(json.dumps(desc))
    with pytest.raises(CompatibilityError, match="3 outputs but router.json lists 2"):
        load_router(tmp_path)
    with pytest.raises(SpecError):
        save_router(tmp_path / "x", _random_router(), {"experts": IDS[:2]})


def test_not_a_router_dir(tmp_path):
    with pytest.raises(ManifestError, match="not a router directory"):
        load_router(tmp_path)


@pytest.mark.parametrize("kw", [{"num_experts": 1}, {"num_experts": 2, "input_size": 31}])
def test_bad_config(kw):
    with pytest.raises(SpecError):
        RouterConfig(**kw)


def test_reordering_to_an_ensembles_expert_order(tmp_path):
    save_router(tmp_path, _random_router(), {"kind": "router", "experts": IDS})
    router, _ = load_router(tmp_path)
    x = torch.randn(2, 3, 32, 32)
    full = router(x, 0.4)
    assert torch.equal(router.for_experts([IDS[2], IDS[0]])(x, 0.4), full[:, [2, 0]])
    assert torch.equal(make_router(str(tmp_path), [IDS[1], IDS[2], IDS[0]])(x, 0.4), full[:, [1, 2, 0]])
    with pytest.raises(CompatibilityError, match="not trained for expert sha256:ddd"):
        router.for_experts([IDS[0], "sha256:" + "d" * 64])


def test_untrained_routers_by_name():
    x, ids = torch.randn(4, 3, 8, 8), IDS[:2]
    assert torch.equal(make_router("uniform", ids)(x, 0.5), torch.zeros(4, 2))
    thr = make_router("threshold:0.5:0:1", ids)
    assert thr(x, 0.2).argmax(1).tolist() == [0] * 4 and thr(x, 0.8).argmax(1).tolist() == [1] * 4
    assert make_router("oracle", ids, labels=torch.tensor([1, 0, 1, 1]))(x, 0.5).argmax(1).tolist() == [1, 0, 1, 1]
    for bad in ("threshold:x", "nope"):
        with pytest.raises(SpecError):
            make_router(bad, ids)
