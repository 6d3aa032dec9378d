"""The diffusion core: schedules, prediction types, the shared velocity space, routers, solvers."""

from hddm_p2p.diffusion.ensemble import Ensemble, expert_velocity
from hddm_p2p.diffusion.prediction import Prediction, convert, from_pivot, to_pivot
from hddm_p2p.diffusion.routing import Mode, OracleRouter, ThresholdRouter, UniformRouter, routing_weights
from hddm_p2p.diffusion.safeguards import Safeguards
from hddm_p2p.diffusion.schedules import SCHEDULES, Schedule, get_schedule, register_schedule
from hddm_p2p.diffusion.solvers import SOLVERS, sample_euler, sample_heun, time_grid
from hddm_p2p.diffusion.spec import ExpertSpec

__all__ = [
    "Ensemble", "expert_velocity", "Prediction", "convert", "from_pivot", "to_pivot", "Mode", "OracleRouter",
    "ThresholdRouter", "UniformRouter", "routing_weights", "Safeguards", "SCHEDULES", "Schedule", "get_schedule",
    "register_schedule", "SOLVERS", "sample_euler", "sample_heun", "time_grid", "ExpertSpec",
]
