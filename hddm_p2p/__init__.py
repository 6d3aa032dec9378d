"""hddm-p2p: heterogeneous decentralized diffusion models, shared between strangers over IPFS.

Data flows dataset → clusters → experts → signed manifests → store → assemble → router + experts
→ sampler → images. Experts may predict noise (DDPM), flow velocity, x0 or v on different noise
schedules; the core (``hddm_p2p.diffusion``) converts every prediction, in closed form, into one
flow-linear velocity space where a router's weights combine them and an ODE solver integrates::

    import torch
    from hddm_p2p import Ensemble, ExpertSpec, ThresholdRouter

    experts = [(ddpm_model, ExpertSpec("epsilon", "vp-linear", time_scale=999)),
               (fm_model, ExpertSpec("velocity", "flow-linear"))]
    ens = Ensemble(experts, router=ThresholdRouter(0.5, low=[0], high=[1]), mode="top-1")
    images = ens.sample(torch.randn(16, 3, 32, 32), steps=50, solver="heun")
"""

from hddm_p2p.diffusion import (
    Ensemble,
    ExpertSpec,
    OracleRouter,
    Prediction,
    Safeguards,
    ThresholdRouter,
    UniformRouter,
    get_schedule,
)

__version__ = "0.1.0"
__all__ = ["Ensemble", "ExpertSpec", "OracleRouter", "Prediction", "Safeguards", "ThresholdRouter",
           "UniformRouter", "get_schedule", "__version__"]
