"""The quiz's answer key: a digest of each right letter, and the explanation that the feedback shows.

Like the rest of ``autograder/`` it is never shown to a sandboxed kernel and never in the student bundle.
The digests are ``lrdiff_helpers.grading.answer_digest(question, letter)``; ``tests/test_exercises_quiz.py``
derives every right letter by executing the question's code and checks it against them, and checks that each
explanation names the right letter.
"""

from __future__ import annotations

#: The right letter of each question, as ``answer_digest(question, letter)``.
QUIZ_KEY: dict[str, str] = {
    "q1": "0f151a6e95636f22",
    "q2": "125c51426bd9c161",
    "q3": "6ad5d35e4d74e118",
    "q4": "887332ff241f0122",
    "q5": "f58bbf4b2db1f1d5",
    "q6": "f83f94ac241e7c6d",
    "q7": "fc5d6231701e46ad",
    "q8": "1b5f18d9b80c5a91",
    "q9": "8ce3cdcfe511dff2",
    "q10": "61373aaee34d89de",
    "q11": "6d70ac09e37e59e4",
    "q12": "f99ca09eecabdb31",
    "q13": "625d8b18062d3032",
    "q14": "fb85b3fc7d8feae2",
    "q15": "f6bec04a092de838",
    "q16": "f5baf8606fe5175c",
    "q17": "d373ea9ea6ddb776",
}

#: What the feedback says about each question, after grading (whatever the student answered).
EXPLANATIONS: dict[str, str] = {
    "q1": "C. The backbone's features are worth keeping, the head starts from nothing. A is false: the new "
          "head's random outputs send large gradients back into the backbone (lesson 1 measures how far each "
          "stage moves under one high lr); D is false: BatchNorm's running statistics are buffers, updated by "
          "every forward pass in train() mode whatever the lr (lesson 6); B is no rule of PyTorch's.",
    "q2": "D. Each group is a dict whose \"params\" is an iterable of tensors (module.parameters()) and whose "
          "\"lr\" is a number. A and B raise TypeError (an lr must be a number, not a list or a dict), and C "
          "raises TypeError too (a Module is not an iterable of tensors).",
    "q3": "B. A group without \"lr\" takes the optimizer's lr= argument, the base lr (lesson 2); nothing raises.",
    "q4": "D. model.parameters() is a generator: the first list comprehension uses it up, so the second group is "
          "empty. torch accepts an empty group without a word; the inspector (lesson 2) flags it.",
    "q5": "A. torch keeps unknown keys in a group and never reads them, so \"learning_rate\" is ignored and the "
          "group takes the base lr; the inspector (lesson 2) lists such ignored keys.",
    "q6": "C. A parameter in two groups raises ValueError when the optimizer is built (inside one group it only "
          "warns and is stepped twice, lesson 2). Build the backbone's group without the head's parameters.",
    "q7": "A. The optimizer holds tensors, not attributes: after model.part2 = nn.Linear(5, 2) it still holds "
          "the old part2's tensors, which are no longer in the model, so the new head never trains (lesson 3). "
          "B and C change the same tensors in place, which the optimizer still holds; D changes requires_grad.",
    "q8": "A. With Adam, one lr of 0.001 for all reached about 59% on validation and the differential about 67% "
          "(lesson 4): Adam moves every weight that gets a gradient by about the lr per step, so one lr high "
          "enough for the head rewrites the backbone. B is false (each group keeps its lr), C is false (a head "
          "at 0.001 with the backbone 30 times slower does better than one lr of 0.001), D is false (BatchNorm "
          "updates its statistics in train() mode whatever the lr).",
    "q9": "C. ULMFiT's rule: the last group (fc) gets the lr, and each group before it 2.6 times less, so layer4 "
          "gets 1e-2 / 2.6 and the stem 1e-2 / 2.6**5 (lesson 5).",
    "q10": "B. OneCycleLR cycles momentum too (Adam's first beta), between base_momentum 0.85 and max_momentum "
           "0.95, and sets every group's to 0.95 when it is built, overwriting the 0.5 (lesson 5). Pass "
           "cycle_momentum=False to keep yours.",
    "q11": "A. AdamW's decoupled weight decay multiplies each weight by 1 - lr * weight_decay, with the group's "
           "lr: 1 - 1e-5 * 0.01 for the backbone, 1 - 1e-2 * 0.01 for the head. D describes Adam with "
           "weight_decay (decay added to the gradient), not AdamW (lesson 5).",
    "q12": "C. lr 0 (and SGD's decay, also scaled by the lr) keeps the weights still, but every forward pass in "
           "train() mode updates each BatchNorm's running_mean, running_var and num_batches_tracked (lesson "
           "6). Use FrozenBatchNorm2d or eval mode for the backbone, or requires_grad=False with BatchNorm in "
           "eval mode, when you mean frozen.",
    "q13": "A. LinearLR multiplies each group's current lr by the ratio of consecutive factors (0.1 -> 1 over 5 "
           "steps, ten times in all). The first group went from 0.01 to 0.1; the new group started at 0.1 and "
           "ends at about 1.0, with no error (lesson 6). Build the scheduler after the last group joins.",
    "q14": "D. load_state_dict matches groups and parameters by position and checks only their counts and "
           "sizes, so b takes the first saved group's lr (0.1) and a's momentum buffers, silently (lesson 6). "
           "Build the groups in the saved order, or compare the saved param_names before loading.",
    "q15": "B. timm's layer decay stores each group's factor as \"lr_scale\"; timm's schedulers multiply it in, "
           "but torch's optimizers and schedulers ignore the key, so every group trains at 1e-3 (lesson 7). "
           "Use timm's scheduler, or set each group's lr to lr * lr_scale yourself.",
    "q16": "B. B starts at zero, so at first the adapter changes only through B; LoRA+ gives B a larger lr than "
           "A, about 16 times in the paper (Hayou, Ghosh and Yu, 2024), which peft's "
           "create_loraplus_optimizer sets with loraplus_lr_ratio (lesson 8).",
    "q17": "D. cls_token and pos_embed are in vit.no_weight_decay(), and timm's rule exempts them; a rule by name "
           "(\".bias\" or \"norm\") decays them (lesson 7). The weight matrices (head, patch embedding, "
           "attention, MLP) are decayed by every rule.",
}
