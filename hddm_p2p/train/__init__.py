"""Single-device expert training: objectives, data, the loop, the expert directory, VAE latents."""

from hddm_p2p.train.objectives import Objective, ObjectiveConfig, diffusion_loss, sample_time

__all__ = ["Objective", "ObjectiveConfig", "diffusion_loss", "sample_time"]
