"""Checks for the graded exercises (``source/lrdiff/``): what an optimizer really does to each parameter.

The test cells of ``exercises.ipynb`` call a student's function, then hand the result to these checks.
The checks look at *behaviour*, not spelling: param-group dicts are turned into a real optimizer
(``torch.optim.SGD(groups, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)``), so a key torch ignores
(``"learning_rate"``) counts for nothing and a group without ``"lr"`` gets the optimizer's base lr, as it
would in a student's training script. Parameters are matched by identity, never by name or value.

Every failure is an ``AssertionError`` that says what was expected and what was found::

    bn1.weight is in no param group; every trainable parameter must be in exactly one

nbgrader scores a test cell 0 when it writes anything to stderr, and torch writes warnings there. So test
cells run students' code inside :func:`quiet`, and nothing here warns or writes to stderr.

Nothing in this package knows the answers of the quiz; the expected values of the exercises are computed
from the model and the arguments (:func:`expected_lrs_by_module`, :func:`expected_layerwise_lrs`,
:func:`expected_weight_decays`, :func:`reference_one_cycle_lrs`).

Where things are (one job a module; ``from lrdiff_helpers import grading`` re-exports every public name):

* :mod:`.messages`: :func:`quiet`, :func:`call` and how failures are listed;
* :mod:`.groupmap`: :func:`effective_groups` (on top of :mod:`lrdiff_helpers.resolve`), :class:`GroupMap`;
* :mod:`.structure`: group dicts, exactly one group, no empty group, the ResNet stages;
* :mod:`.optimizer`: optimizer facts and :func:`check_optimizer`;
* :mod:`.expected`: the expected values, by the builders' own rules;
* :mod:`.assertions`: :func:`assert_lrs`, :func:`assert_weight_decays`;
* :mod:`.schedule`: one-cycle schedules; :mod:`.quiz`: the quiz; :mod:`.experiment`: the graded experiment;
* :mod:`.builders`: the helpers' builders that students must not call.
"""

from __future__ import annotations

from ..param_groups import NORM_TYPES, RESNET_STAGES, stage_of
from .assertions import assert_lrs, assert_weight_decays
from .builders import FORBIDDEN_BUILDERS, builders_used
from .expected import (
    expected_finetune_lrs,
    expected_layerwise_lrs,
    expected_lrs_by_module,
    expected_vit_llrd_lrs,
    expected_vit_weight_decays,
    expected_weight_decays,
)
from .experiment import (
    EXPERIMENT_MIN_TEST_ACC,
    EXPERIMENT_MIN_VAL_ACC,
    EXPERIMENT_SEEDS,
    ExperimentResult,
    check_experiment_values,
    experiment_results,
    experiment_test_accuracy,
)
from .groupmap import SENTINEL_LR, SENTINEL_WD, GroupMap, Placement, effective_groups
from .messages import call, quiet
from .optimizer import OptimizerFacts, check_optimizer, json_scalar, optimizer_facts, qualified_name
from .quiz import answer_digest, check_choice
from .schedule import (
    ScheduleFacts,
    check_one_cycle_bound,
    check_one_cycle_lrs,
    check_one_cycle_peaks,
    one_cycle_lrs,
    reference_one_cycle_lrs,
    schedule_facts,
)
from .structure import (
    GroupShape,
    check_exactly_one_group,
    check_group_dicts,
    check_no_empty_groups,
    check_stage_groups,
    group_shape,
)


__all__ = [
    "EXPERIMENT_MIN_TEST_ACC",
    "EXPERIMENT_MIN_VAL_ACC",
    "EXPERIMENT_SEEDS",
    "ExperimentResult",
    "FORBIDDEN_BUILDERS",
    "GroupMap",
    "Placement",
    "RESNET_STAGES",
    "SENTINEL_LR",
    "SENTINEL_WD",
    "answer_digest",
    "assert_lrs",
    "call",
    "assert_weight_decays",
    "check_choice",
    "check_experiment_values",
    "check_exactly_one_group",
    "check_group_dicts",
    "check_no_empty_groups",
    "builders_used",
    "check_one_cycle_bound",
    "check_one_cycle_lrs",
    "check_one_cycle_peaks",
    "check_optimizer",
    "check_stage_groups",
    "effective_groups",
    "expected_finetune_lrs",
    "expected_layerwise_lrs",
    "expected_lrs_by_module",
    "expected_vit_llrd_lrs",
    "expected_vit_weight_decays",
    "expected_weight_decays",
    "experiment_results",
    "experiment_test_accuracy",
    "one_cycle_lrs",
    "quiet",
    "reference_one_cycle_lrs",
    "stage_of",
    "GroupShape",
    "NORM_TYPES",
    "OptimizerFacts",
    "ScheduleFacts",
    "group_shape",
    "json_scalar",
    "optimizer_facts",
    "qualified_name",
    "schedule_facts",
]
