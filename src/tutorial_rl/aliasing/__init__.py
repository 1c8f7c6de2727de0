"""Action aliasing on one frozen state: the fixed-state experiment of chapters 6 and 7.

Chapter 6 (chapters/06_aliasing.py) and Chapter 7 (chapters/07_mitigations.py); paper section 6.3
and appendix A.7; DESIGN.md §3. One module per concept:

- :mod:`.scenarios`: the frozen quadrotor (task and safety aligned) and seeker (not aligned)
  states, their safe action polygons and true action values;
- :mod:`.critics`: fitting the critics by supervised regression;
- :mod:`.experiment`: the six settings, their learned objectives and the 50-step ascent;
- :mod:`.flat_lining`: Lemma 2 measured on the fitted SE critic;
- :mod:`.jacobians`: the Jacobian at boundary points (against cvxpylayers) and the penalty's
  gradient;
- :mod:`.long_horizon`: a seeker state where today's action changes tomorrow's penalties, the
  penalty critic's long-term part measured on fitted critics (Chapter 7 only);
- :mod:`.plots`: the figures (imported on demand, so the experiment does not need matplotlib).
"""

from tutorial_rl.aliasing.critics import fit_critics
from tutorial_rl.aliasing.experiment import (
    CRITICS,
    NEEDS,
    SETTING_LABELS,
    SETTINGS,
    AliasingResult,
    ExperimentConfig,
    Trajectory,
    run_all,
    run_experiment,
)
from tutorial_rl.aliasing.flat_lining import (
    NormalDerivatives,
    SweepRun,
    normal_derivatives,
    se_critic_sweep,
    values_along_ray,
)
from tutorial_rl.aliasing.jacobians import (
    JacobianComparison,
    boundary_points,
    compare_jacobians,
    is_on_boundary,
    penalty_gradient_check,
)
from tutorial_rl.aliasing.long_horizon import (
    LONG_HORIZON_LABELS,
    LONG_HORIZON_SETTINGS,
    ApproachScenario,
    LongHorizonConfig,
    LongHorizonResult,
    approach_scenario,
    decomposition_check,
    run_long_horizon,
)
from tutorial_rl.aliasing.scenarios import (
    QUADROTOR_INITIAL_ACTION,
    QUADROTOR_STATE,
    SEEKER_INITIAL_ACTION,
    SEEKER_LAYOUT,
    Scenario,
    quadrotor_scenario,
    seeker_scenario,
)

__all__ = [
    "CRITICS", "LONG_HORIZON_LABELS", "LONG_HORIZON_SETTINGS", "NEEDS", "QUADROTOR_INITIAL_ACTION",
    "QUADROTOR_STATE", "SEEKER_INITIAL_ACTION", "SEEKER_LAYOUT", "SETTINGS", "SETTING_LABELS",
    "AliasingResult", "ApproachScenario", "ExperimentConfig", "JacobianComparison",
    "LongHorizonConfig", "LongHorizonResult", "NormalDerivatives", "Scenario", "SweepRun",
    "Trajectory", "approach_scenario", "boundary_points", "compare_jacobians",
    "decomposition_check", "fit_critics", "is_on_boundary", "normal_derivatives",
    "penalty_gradient_check", "quadrotor_scenario", "run_all", "run_experiment",
    "run_long_horizon", "se_critic_sweep", "seeker_scenario", "values_along_ray",
]
