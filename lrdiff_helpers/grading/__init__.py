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

Names are imported on first use (``lrdiff_helpers/lazy.py``): the quiz's kernel calls only :func:`check_choice`
and never imports torch.
"""

from ..lazy import attach

_EXPORTS = {
    "..param_groups": ["NORM_TYPES", "RESNET_STAGES", "stage_of"],
    ".assertions": ["assert_lrs", "assert_weight_decays"],
    ".builders": ["FORBIDDEN_BUILDERS", "builders_used"],
    ".expected": [
        "expected_finetune_lrs",
        "expected_layerwise_lrs",
        "expected_lrs_by_module",
        "expected_vit_llrd_lrs",
        "expected_vit_weight_decays",
        "expected_weight_decays",
    ],
    ".experiment": [
        "EXPERIMENT_MIN_TEST_ACC",
        "EXPERIMENT_MIN_VAL_ACC",
        "EXPERIMENT_SEEDS",
        "ExperimentResult",
        "check_experiment_values",
        "experiment_results",
        "experiment_test_accuracy",
    ],
    ".groupmap": ["SENTINEL_LR", "SENTINEL_WD", "GroupMap", "Placement", "effective_groups"],
    ".messages": ["call", "quiet"],
    ".optimizer": ["OptimizerFacts", "check_optimizer", "json_scalar", "optimizer_facts", "qualified_name"],
    ".quiz": ["answer_digest", "check_choice"],
    ".schedule": [
        "ScheduleFacts",
        "check_one_cycle_bound",
        "check_one_cycle_lrs",
        "check_one_cycle_peaks",
        "one_cycle_lrs",
        "reference_one_cycle_lrs",
        "schedule_facts",
    ],
    ".structure": [
        "GroupShape",
        "check_exactly_one_group",
        "check_group_dicts",
        "check_no_empty_groups",
        "check_stage_groups",
        "group_shape",
    ],
}

_SUBMODULES = [
    "assertions", "builders", "expected", "experiment", "groupmap", "messages", "optimizer", "quiz", "schedule",
    "structure",
]

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS, _SUBMODULES)
